"""GRPO with Perception Calibration: the policy update of ILR (arXiv 2509.26306, Sec. "Perception Calibration", Eq. 5).

Where it sits in the data flow
    ilr -> irt (mode per question) -> idea3 (M agents talk, each writes G answers) -> evaluate (grader: rewards)
        -> grpo: rewards [B, M, G] --perception_calibration (Eq. 5)--> calibrated rewards [B, M, G]
                 --group_advantages--> advantages [B, M, G]
                 per agent: pack_batch(prompt ids, completion ids) -> grpo_step(model, optimizer, ...) -> ilr
                 (grpo_step's forward: shared_prefix_logps, each prompt encoded once for its G completions)

Shapes: B questions, G generations per question, M agents, N = rows of a training batch (e.g. B*G),
P prompt tokens, T completion tokens, V vocabulary.

Run the tests (about 10 s):
    .venv/bin/python -m pytest tests/test_grpo.py --doctest-modules grpo.py -q
See the calibration lesson (binary vs multi-level rewards) printed with numbers:
    .venv/bin/python grpo.py

What the paper states and what we chose (tags in the code: # PAPER: / # OURS: / # OPEN:)
 1. Eq. 5 is the paper's; peer statistics (mean, max, min) are taken per question over the peer's G rewards.
 2. OPEN: a peer whose G rewards are all equal has max - min = 0 and Eq. 5 divides by zero. OURS: the term takes
    its limit as the peer's spread shrinks to 0: +1/(M-1) if R[i,k] is above the peer's common value, -1/(M-1)
    if below, 0 if equal (the clip saturates). It stays bounded like every other term, never NaN, and keeps Eq. 5
    monotone in R[i,k]. To use "such a peer adds nothing" instead, change one line in perception_calibration.
 3. OPEN: advantage normalisation. OURS: scale_rewards="std" divides by the *sample* std (Bessel, torch.std's
    default, as TRL) plus eps = 1e-4 (TRL's value); "none" = r - mean (Dr. GRPO). A group whose rewards are all
    equal gets advantages exactly 0 (not 0/eps noise), so its samples are skipped by grpo_step.
 4. OPEN: loss details. OURS: TRL 1.16's: clipped surrogate with epsilon (low) / epsilon_high, KL to a frozen
    reference by the k3 estimator with coefficient beta (0 = no reference model), weighted by the importance
    ratio (use_bias_correction_kl=True, TRL's default: the unbiased reverse-KL gradient; see grpo_loss),
    loss_type "grpo" (mean over each sequence's tokens, then over sequences) or "dapo" (mean over all tokens).
    One update per generation batch (TRL's num_iterations=1), so old_per_token_logps defaults to
    per_token_logps.detach() (ratio = 1, but its gradient is not 0).
 5. OURS: zero-advantage samples are not forwarded when that is exact. The loss is normalised by the WHOLE
    generation batch (all N sequences for "grpo", all completion tokens for "dapo"), skipped samples included,
    exactly as if they had been forwarded. With beta = 0 their gradient is exactly 0, so they are skipped (tested).
    With beta > 0 their KL term has a gradient, so they are trained like every other row (tested equal to the full
    forward); skip_zero_advantage_kl_approx=True skips them anyway and drops their KL term (faster, not TRL's).
 6. OURS: log-probabilities use the token ids the generator returned (no re-tokenisation), position ids from the
    attention mask (as `generate` does with left padding), and logits / temperature (TRL) so that the ratio is
    taken against the distribution that was sampled; the division is done in fp32, after the upcast of bf16/fp16
    logits, as generation does it (selective_log_softmax).
 8. OURS (mixed precision, exact in fp32): selective_log_softmax keeps 2 B per logit for its backward in bf16
    (a custom autograd Function); grpo_step casts each weight once per step (one autocast region) and reads the
    device once per step (its index work runs on the CPU batch; the statistics are read together at the end).
 7. OURS (speed, exact): the training forward encodes each group's shared prompt once and runs only the
    completions on its KV cache (shared_prefix_logps; "Prefix Grouper", arXiv 2506.05433). Same log-probs and
    gradients as the plain forward (tested); under HF gradient checkpointing the plain forward is used.
"""
from __future__ import annotations

import contextlib
import functools

import torch

# ----------------------------------------------------------------------------------------------------------
# 1) Rewards -> calibrated rewards (Eq. 5) -> advantages. Pure functions, no model.
# ----------------------------------------------------------------------------------------------------------


def perception_calibration(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 5: calibrate each agent's rewards by its peers' reward distributions on the same question.

        Rbar[i,k] = R[i,k] + sum_{l != i} clip( (R[i,k] - mean_k R[l,k]) / (max_k R[l,k] - min_k R[l,k]),
                                                -1/(M-1), +1/(M-1) )

    rewards: [M, G] or [B, M, G] (M agents, G samples each) -> calibrated rewards, same shape.
    A peer with max == min (all its rewards equal) gives +-1/(M-1) by sign of R[i,k] - its value, 0 if equal
    (module header, choice 2); a spread below eps counts as eps. M = 1 (no peer) returns the rewards unchanged.

    >>> perception_calibration(torch.tensor([[1., 0, 0, 0], [1, 1, 0, 0]]))  # peer 1 has mean 0.5, range 1
    tensor([[ 1.5000, -0.5000, -0.5000, -0.5000],
            [ 1.7500,  1.7500, -0.2500, -0.2500]])
    >>> perception_calibration(torch.tensor([[1., 0], [0.5, 0.5]]))  # peer 1 all equal: agent 0's term is +-1
    tensor([[ 2.0000, -1.0000],
            [ 0.5000,  0.5000]])
    """
    M = rewards.shape[-2]
    if M == 1:
        return rewards.clone()
    bound = 1.0 / (M - 1)                                      # PAPER: clip range +-1/(m-1)
    term = calibration_z(rewards, eps).clamp(-bound, bound)    # PAPER: clip(., -1/(m-1), 1/(m-1))  [..., M, M, G]
    not_self = ~torch.eye(M, dtype=torch.bool, device=rewards.device)  # [M(i), M(l)]  the sum over l != i
    return rewards + (term * not_self[..., None]).sum(-2)      # [..., M, G]  R + sum over peers l


def calibration_z(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 5's argument of the clip, z[..., i, l, k] = (R[i,k] - mean_k R[l,k]) / (max_k R[l,k] - min_k R[l,k]),
    for every agent i against every agent l (l = i included; the callers drop it): [..., M, G] -> [..., M, M, G].

    >>> calibration_z(torch.tensor([[1., 0], [1, 1]]))[0, 1]  # peer 1 all equal (at 1): 0 for R = 1, -1/eps below
    tensor([       0., -1000000.])
    """
    peer_mean = rewards.mean(-1)                               # [..., M]  R_{l,avg}, over G
    peer_max, peer_min = rewards.amax(-1), rewards.amin(-1)    # [..., M]  R_{l,max}, R_{l,min}
    spread = peer_max - peer_min                               # [..., M]
    # OURS (choice 2): an all-equal peer is centred on its exact common value (its float mean may be 1 ulp off)
    # and divided by eps, so the clip saturates to +-bound by sign, and gives exactly 0 for an equal reward.
    centre = torch.where(spread > 0, peer_mean, peer_min)      # [..., M]
    own = rewards.unsqueeze(-2)                                # [..., M(i), 1, G]
    return (own - centre[..., None, :, None]) / spread.clamp_min(eps)[..., None, :, None]  # [..., M(i), M(l), G]


def calibration_clip_share(rewards: torch.Tensor, eps: float = 1e-6) -> float:
    """Share of (question, agent) groups where Eq. 5's clip binds (logged as ilr/calibration_clip_share).

        group (b, i) counts  <=>  |z[b,i,l,k]| > 1/(M-1) for some peer l != i and some answer k,
        z[b,i,l,k] = (R[b,i,k] - mean_k R[b,l,k]) / (max_k R[b,l,k] - min_k R[b,l,k])

    rewards: [M, G] or [B, M, G] -> a share in [0, 1] over the B*M groups; M = 1 (no peer) gives 0.0. An all-equal
    peer counts as binding unless R equals its value (z is then +-inf: module header, choice 2). Inside the clip
    Eq. 5 is affine in R, so std advantages change only in a group with >= 3 reward levels where it binds.

    >>> calibration_clip_share(torch.tensor([[1., .25, 0, 0], [.25, 0, 0, 0]]))  # agent 0: (1-1/16)/.25 > 1
    0.5
    >>> calibration_clip_share(torch.tensor([[1., 0, 0, 0], [1, 1, 0, 0]]))      # both peers span [0, 1]
    0.0
    """
    M = rewards.shape[-2]
    if M == 1:
        return 0.0
    z = calibration_z(rewards.reshape(-1, M, rewards.shape[-1]), eps)                  # [B, M(i), M(l), G]
    not_self = ~torch.eye(M, dtype=torch.bool, device=rewards.device)[None, :, :, None]  # [1, M(i), M(l), 1]
    binds = ((z.abs() > 1.0 / (M - 1)) & not_self).flatten(-2).any(-1)                   # [B, M(i)]
    return binds.float().mean().item()


def group_advantages(rewards: torch.Tensor, scale: str = "std", eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantage of each sample against the other samples of its question.

        scale="std":  A[k] = (R[k] - mean(R)) / (std(R) + eps)    std = sample std (divides by G-1), as TRL
        scale="none": A[k] =  R[k] - mean(R)                       Dr. GRPO (no division)

    rewards: [..., G] (last axis = the G samples of one question) -> advantages [..., G].
    A group whose rewards are all equal gets exactly 0 (no gradient; grpo_step skips those samples).
    TRL calls this option scale_rewards; eps = 1e-4 is TRL's value.

    >>> group_advantages(torch.tensor([1., 0, 0, 0]))  # mean 0.25, sample std 0.5 -> 0.75/0.5, -0.25/0.5
    tensor([ 1.4997, -0.4999, -0.4999, -0.4999])
    >>> group_advantages(torch.tensor([1., 0, 0, 0]), scale="none")
    tensor([ 0.7500, -0.2500, -0.2500, -0.2500])
    >>> group_advantages(torch.tensor([0.3, 0.3, 0.3]))  # all equal: exactly zero
    tensor([0., 0., 0.])
    """
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards)                               # G = 1: no group to compare with
    centred = rewards - rewards.mean(-1, keepdim=True)                 # [..., G]  R - mean over G
    if scale == "std":
        advantages = centred / (rewards.std(-1, keepdim=True) + eps)   # OPEN: sample std (unbiased), as TRL
    elif scale == "none":
        advantages = centred                                           # Dr. GRPO: no std division
    else:
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    all_equal = rewards.amax(-1, keepdim=True) == rewards.amin(-1, keepdim=True)  # [..., 1]
    return torch.where(all_equal, torch.zeros_like(advantages), advantages)  # exact 0, also for G = 1


def reward_stats(rewards: torch.Tensor) -> dict:
    """TRL's reward metrics for rewards [..., G]: mean reward, mean within-group std, share of zero-std groups.

    >>> reward_stats(torch.tensor([[1., 0, 0, 0], [1, 1, 1, 1]]))
    {'reward': 0.625, 'reward_std': 0.25, 'frac_reward_zero_std': 0.5}
    """
    group_std = rewards.std(-1) if rewards.shape[-1] > 1 else torch.zeros(rewards.shape[:-1])  # [...] over G
    zero_std = rewards.amax(-1) == rewards.amin(-1)                                           # [...]
    return {"reward": rewards.mean().item(), "reward_std": group_std.mean().item(),
            "frac_reward_zero_std": zero_std.float().mean().item()}


# ----------------------------------------------------------------------------------------------------------
# 2) Token ids -> one padded batch -> per-token log-probabilities of the completion tokens.
# ----------------------------------------------------------------------------------------------------------


def pack_batch(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int) -> dict:
    """Pad the generator's token ids (no re-tokenisation) into one batch for a single forward pass.

    prompt_ids: N lists (lengths vary) and completion_ids: N lists -> dict with
      input_ids      [N, P+T]  prompts left-padded to P, completions right-padded to T
      attention_mask [N, P+T]  1 on real tokens
      completion_mask [N, T]   1 on real completion tokens (an EOS the model produced counts: it was sampled)
      logits_to_keep  int T    the forward pass computes logits only for the last T (+1) positions

    >>> b = pack_batch([[5, 6], [7]], [[8], [9, 10]], pad_id=0)
    >>> b["input_ids"].tolist(), b["attention_mask"].tolist(), b["completion_mask"].tolist(), b["logits_to_keep"]
    ([[5, 6, 8, 0], [0, 7, 9, 10]], [[1, 1, 1, 0], [0, 1, 1, 1]], [[1, 0], [1, 1]], 2)
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    N = len(prompt_ids)
    P = max(len(p) for p in prompt_ids)
    T = max(1, max(len(c) for c in completion_ids))
    input_ids = torch.full((N, P + T), pad_id, dtype=torch.long)      # [N, P+T]
    attention_mask = torch.zeros((N, P + T), dtype=torch.long)        # [N, P+T]
    for n, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[n, P - len(p):P] = torch.tensor(p, dtype=torch.long)          # left-pad the prompt
        input_ids[n, P:P + len(c)] = torch.tensor(c, dtype=torch.long)          # right-pad the completion
        attention_mask[n, P - len(p):P + len(c)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "completion_mask": attention_mask[:, P:].clone(), "logits_to_keep": T}


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature)[index] without materialising the full [N, T, V] log-softmax.

        log p(x_t) = z[t, x_t] - logsumexp_v z[t, v]        z = logits.float() / temperature

    logits: [N, T, V] (any float dtype), index: [N, T] token ids -> [N, T] log-probabilities (float32).
    One row (sequence) at a time, so the float32 working copy is [T, V], not [N, T, V] (as TRL). The division by
    the temperature comes after the upcast to float32, as in generation (HF's temperature warper divides fp32
    scores), not in bf16/fp16. A custom autograd Function (_SelectiveLogSoftmax) keeps for the backward only the
    logits as they come (2 B per logit in bf16/fp16, 4 B in fp32) and the fp32 logsumexp per token, and recomputes
    the softmax row by row there; autograd would keep the bf16 logits and every row's fp32 copy (6 B per logit).

    >>> selective_log_softmax(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))  # uniform over 4: log(1/4)
    tensor([[-1.3863, -1.3863]])
    """
    return _SelectiveLogSoftmax.apply(logits, index, float(temperature))


class _SelectiveLogSoftmax(torch.autograd.Function):
    """selective_log_softmax's forward and its backward, which recomputes the softmax from the saved logits.

        d log p(x_t) / d logits[t, v] = (1[v = x_t] - softmax(z[t])_v) / temperature

    In fp32 it computes what autograd computes for the plain expression (gather - logsumexp of logits / T), the
    same operations in the same order: same values and the same gradient (tests/test_gpu_path.py)."""

    @staticmethod
    def forward(ctx, logits, index, temperature):
        scaled = (lambda x: x / temperature) if temperature != 1.0 else (lambda x: x)   # in fp32 (docstring)
        picked = scaled(logits.gather(-1, index.unsqueeze(-1)).squeeze(-1).float())     # [N, T]  z[x_t]
        lse = torch.stack([torch.logsumexp(scaled(row.float()), dim=-1) for row in logits])  # [N, T]  over V
        ctx.save_for_backward(logits, index, lse)                                        # 2 B per logit in bf16
        ctx.temperature = temperature
        return picked - lse

    @staticmethod
    def backward(ctx, grad):                                                             # grad [N, T]
        logits, index, lse = ctx.saved_tensors
        temperature = ctx.temperature
        grad_logits = torch.empty_like(logits)                                           # [N, T, V]  logits' dtype
        for n, row in enumerate(logits):                                                 # row [T, V]
            z = row.float() / temperature if temperature != 1.0 else row.float()       # [T, V]  fp32, recomputed
            g = grad[n].float()                                                          # [T]
            d = -g.unsqueeze(-1) * (z - lse[n].unsqueeze(-1)).exp()                      # [T, V]  -g * softmax
            d.scatter_add_(-1, index[n].unsqueeze(-1), g.unsqueeze(-1))                  # + g at x_t
            grad_logits[n] = d / temperature if temperature != 1.0 else d                # chain rule through / T
        return grad_logits, None, None


def trim_padding(batch: dict) -> dict:
    """Drop columns that are padding in every row (after selecting a micro-batch): same result, less compute.

    >>> b = pack_batch([[5, 6], [7]], [[8], [9, 10]], pad_id=0)
    >>> small = trim_padding({k: v[1:] if k != "logits_to_keep" else v for k, v in b.items()})  # row 1 only
    >>> small["input_ids"].tolist(), small["completion_mask"].tolist(), small["logits_to_keep"]
    ([[7, 9, 10]], [[1, 1]], 2)
    """
    T = batch["logits_to_keep"]
    prompt_mask = batch["attention_mask"][:, :-T]                       # [N, P]
    first = int(prompt_mask.any(0).nonzero().min()) if prompt_mask.any() else prompt_mask.shape[1]
    T_used = int(batch["completion_mask"].any(0).nonzero().max()) + 1 if batch["completion_mask"].any() else 1
    end = batch["input_ids"].shape[1] - T + T_used
    return {"input_ids": batch["input_ids"][:, first:end], "attention_mask": batch["attention_mask"][:, first:end],
            "completion_mask": batch["completion_mask"][:, :T_used], "logits_to_keep": T_used}


def per_token_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                    temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each completion token under `model`, from ONE forward pass.

        per_token_logps[n, t] = log pi(x[n, P+t] | x[n, <P+t])     with pi = softmax(logits / temperature)

    input_ids, attention_mask: [N, P+T] (from pack_batch); logits_to_keep = T -> [N, T] (float32).
    Logits are computed only for the last T+1 positions (HF `logits_to_keep`); the last one predicts nothing
    and is dropped. Position ids follow the attention mask, as in generation with left padding.
    """
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)                 # [N, P+T]  OURS (choice 6)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=logits_to_keep + 1, use_cache=False).logits  # [N, T+1, V]
    logits = logits[:, :-1, :]                                                   # [N, T, V]  predict tokens P..P+T-1
    # OURS (choice 6), as TRL: logits / temperature, divided in fp32 inside (as generation does)
    return selective_log_softmax(logits, input_ids[:, -logits_to_keep:], temperature)     # [N, T]


def prompt_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int):
    """Which rows share a prompt: the G rows of one question's group, found from the tokens themselves.

    input_ids, attention_mask: [N, P+T] (pack_batch); logits_to_keep = T -> (first_row [U], prompt_of_row [N]):
    U distinct prompts (ids and padding both equal), the first row holding each, and each row's prompt index.

    >>> b = pack_batch([[5, 6], [7], [5, 6]], [[8], [9, 10], [11]], pad_id=0)
    >>> prompt_groups(b["input_ids"], b["attention_mask"], b["logits_to_keep"])  # prompt 0 = [7], 1 = [5, 6]
    (tensor([1, 0]), tensor([1, 0, 1]))
    """
    P = input_ids.shape[1] - logits_to_keep
    prompts = torch.cat([input_ids[:, :P], attention_mask[:, :P]], -1)             # [N, 2P]  ids and padding
    unique, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)     # [U, 2P], [N]
    rows = torch.arange(len(prompts), device=prompts.device)                       # [N]
    first_row = torch.full((len(unique),), len(prompts), device=prompts.device)    # [U]
    return first_row.scatter_reduce(0, prompt_of_row, rows, reduce="amin"), prompt_of_row


def uses_checkpointing(model) -> bool:
    """True when HF gradient checkpointing is active (on and in training mode). Its layers then drop any
    past_key_values (transformers' GradientCheckpointingLayer: the backward's recompute would write the cache a
    second time), so a completion forward on top of a prompt cache would silently lose the prompt."""
    return model.training and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def shared_prefix_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        temperature: float = 1.0, groups: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> torch.Tensor:
    """per_token_logps with each distinct prompt encoded ONCE for all its rows ("Prefix Grouper", arXiv 2506.05433).

    The idea. In a causal transformer the prompt's hidden states (and so its keys and values in every layer)
    depend on the prompt alone, so the G rows of a group compute G identical copies of them. Encode the prompt
    once, keep its keys/values as a KV cache built WITH gradient, give every row of the group that cache, and run
    only the completion tokens on top. Every completion token sees exactly the keys and values it saw before, so
    the log-probs are the same numbers; and the gradient is the same, because the backward of "give each row its
    prompt's cache" (an index over the batch axis) sums the G rows' gradients into the one prompt copy, which is
    what the chain rule does over the G identical copies of the plain forward. It is the training-side twin of
    llm.generate's prefill.

        plain:  N rows x (P + T) token positions through the model
        shared: U prompts x P  +  N rows x (T - 1)             (the last completion token predicts nothing)
        e.g. one Fusion group, G = 8, P = 400, T = 96: 8 x 496 = 3968 -> 400 + 8 x 95 = 1160 positions

    Steps (U distinct prompts among the N rows):
      1) prompt_groups: first_row [U], prompt_of_row [N]
      2) prompt forward, ids [U, P] (left padded), positions from the mask, into a fresh DynamicCache; logits
         only at the last prompt position [U, 1, V]: they predict each row's FIRST completion token
      3) cache.batch_select_indices(prompt_of_row): keys/values [U, kv_heads, P, d] -> [N, kv_heads, P, d]
         (indexing, so the autograd graph back to the prompt forward is kept)
      4) completion forward, ids [N, T-1], attention mask [N, P+T-1] (prompt left padding + completion right
         padding), positions continuing each row's count of real tokens -> logits [N, T-1, V]
      5) log-probs [N, T] = (step 2's logits of each row's prompt, step 4's) / temperature, selective_log_softmax
    Falls back to per_token_logps when no prompt repeats (nothing to share) or under gradient checkpointing
    (uses_checkpointing). Same arguments and result as per_token_logps: [N, T] float32. `groups`: step 1's
    result when the caller has it (grpo_step computes it on the CPU copy of the ids: torch.unique on a GPU
    tensor waits for the GPU, a host sync); None computes it here.
    """
    from transformers import DynamicCache

    if uses_checkpointing(model):
        return per_token_logps(model, input_ids, attention_mask, logits_to_keep, temperature)
    first_row, prompt_of_row = groups if groups is not None else prompt_groups(input_ids, attention_mask,
                                                                                 logits_to_keep)  # [U], [N]
    if len(first_row) == len(prompt_of_row):
        return per_token_logps(model, input_ids, attention_mask, logits_to_keep, temperature)
    T = logits_to_keep
    P = input_ids.shape[1] - T
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)                     # [N, P+T]  as per_token_logps
    cache = DynamicCache(config=model.config)
    prompt_logits = model(input_ids=input_ids[first_row, :P], attention_mask=attention_mask[first_row, :P],
                          position_ids=position_ids[first_row, :P], past_key_values=cache, use_cache=True,
                          logits_to_keep=1).logits                                  # [U, 1, V]
    # / temperature in fp32 BEFORE indexing the rows (fp32: the backward sums a group's G gradients, then divides,
    # as it always did: bit-identical); in bf16 this keeps an fp32 [N, 1, V] copy, 1/T of the logits
    scaled = prompt_logits.float() / temperature if temperature != 1.0 else prompt_logits.float()   # [U, 1, V]
    logps = [selective_log_softmax(scaled[prompt_of_row], input_ids[:, P:P + 1])]               # [N, 1]
    if T > 1:
        cache.batch_select_indices(prompt_of_row)                                   # [U, ...] -> [N, h, P, d]
        logits = model(input_ids=input_ids[:, P:-1], attention_mask=attention_mask[:, :-1],
                       position_ids=position_ids[:, P:-1], past_key_values=cache, use_cache=True).logits
        logps.append(selective_log_softmax(logits, input_ids[:, P + 1:], temperature))  # [N, T-1]  tokens P+1..
    return torch.cat(logps, 1)                                                       # [N, T]  (no [N, T, V] copy)


# ----------------------------------------------------------------------------------------------------------
# 3) The GRPO loss (pure) and one training step (model + optimizer).
# ----------------------------------------------------------------------------------------------------------


def grpo_loss(per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor | None, advantages: torch.Tensor,
              completion_mask: torch.Tensor, ref_per_token_logps: torch.Tensor | None = None, beta: float = 0.0,
              epsilon_low: float = 0.2, epsilon_high: float = 0.2, loss_type: str = "grpo",
              normalizer: float | None = None, use_bias_correction_kl: bool = True,
              read_stats: bool = True) -> tuple[torch.Tensor, dict]:
    """Clipped GRPO surrogate with an optional k3 KL penalty to a frozen reference.

        ratio     = exp(logp - logp_old)
        pg_loss1  = -A * ratio,   pg_loss2 = -A * clip(ratio, 1 - epsilon_low, 1 + epsilon_high)
        kl        = exp(ref - logp) - (ref - logp) - 1                 (k3 estimator, >= 0)
        kl        = ratio * kl                      if use_bias_correction_kl (TRL 1.16's default, DeepSeek-V3.2)
        loss_tok  = max(pg_loss1, pg_loss2) + beta * kl
        "grpo":  loss = sum_n [ sum_t mask*loss_tok / sum_t mask ] / normalizer   (default normalizer N)
        "dapo":  loss = sum_{n,t} mask*loss_tok / normalizer                      (default normalizer sum(mask))

    per_token_logps, old_per_token_logps, ref_per_token_logps, completion_mask: [N, T]; advantages: [N].
    old_per_token_logps=None means one update per generation batch: old = per_token_logps.detach(), ratio = 1,
    gradient = -A * grad logp. `normalizer` lets micro-batches (and skipped samples) share one denominator.

    use_bias_correction_kl (TRL's GRPOConfig name and default since 1.16; the DeepSeek-V3.2 paper, arXiv
    2512.02556): the k3 term is weighted by the importance ratio. Its VALUE on-policy is unchanged (ratio = 1),
    but the ratio carries a gradient, and per token (d = ref - logp, on-policy):
        without: d kl / d logp         = 1 - exp(d)                  (the k3 estimator's own gradient)
        with:    d (ratio*kl) / d logp = 1 - exp(d) + kl = -d = logp - ref
    i.e. (logp - ref) * grad logp: the unbiased gradient of the reverse KL(pi || ref) for samples drawn from pi.
    Source: trl 1.16.0, trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss (per_token_kl * coef_1 with
    coef_1 = exp(logp - old_logp) at importance_sampling_level "token") and grpo_config.py's help text.

    Returns (loss, stats) with stats: clip_ratio (share of real tokens where the clip binds, i.e. ratio >
    1 + epsilon_high with A > 0 or ratio < 1 - epsilon_low with A < 0: TRL's clip_ratio/region_mean), kl (mean
    over real tokens of the KL term as added to the loss, corrected or not, as TRL logs it; 0 when beta = 0),
    num_tokens (real completion tokens). read_stats=False returns instead their sums over real tokens as 0-dim
    tensors, {"clipped": ..., "kl_sum": ..., "num_tokens": ...}, without reading them from the device (a host
    sync each); token_stats turns them into the numbers above (grpo_step reads all its micro-batches' at once).
    """
    if old_per_token_logps is None:
        old_per_token_logps = per_token_logps.detach()                      # num_iterations = 1
    mask = completion_mask.to(per_token_logps)                              # [N, T]  same dtype and device
    A = advantages.to(per_token_logps).unsqueeze(-1)                        # [N, 1]
    ratio = torch.exp(per_token_logps - old_per_token_logps)                # [N, T]
    pg_loss1 = -A * ratio                                                   # [N, T]
    pg_loss2 = -A * torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)   # [N, T]
    per_token_loss = torch.maximum(pg_loss1, pg_loss2)                      # [N, T]  pessimistic bound
    kl = torch.zeros_like(per_token_loss)
    if beta > 0:
        delta = ref_per_token_logps - per_token_logps                       # [N, T]  ref - logp
        kl = torch.exp(delta) - delta - 1                                   # [N, T]  k3 estimator
        if use_bias_correction_kl:
            kl = kl * ratio                                                 # [N, T]  TRL: per_token_kl * coef_1
        per_token_loss = per_token_loss + beta * kl
    if loss_type == "grpo":
        seq_loss = (per_token_loss * mask).sum(-1) / mask.sum(-1).clamp_min(1)    # [N]  mean over T per sequence
        loss = seq_loss.sum() / (normalizer if normalizer is not None else len(seq_loss))  # mean over sequences
    elif loss_type == "dapo":
        total = (per_token_loss * mask).sum()                               # over all N*T real tokens
        loss = total / (normalizer if normalizer is not None else mask.sum().clamp_min(1))
    else:
        raise ValueError(f"loss_type must be 'grpo' or 'dapo', got {loss_type!r}")
    sums = {"clipped": ((pg_loss2 > pg_loss1).float() * mask).sum(), "kl_sum": (kl.detach() * mask).sum(),
            "num_tokens": mask.sum()}                                       # 0-dim tensors: sums over real tokens
    if not read_stats:
        return loss, sums
    return loss, token_stats(*torch.stack([s.double() for s in sums.values()]).tolist())


def token_stats(clipped: float, kl_sum: float, num_tokens: float) -> dict:
    """grpo_loss's stats from its sums over real tokens: clip_ratio and kl are means over the tokens (0 when
    there are none), num_tokens an int.

    >>> token_stats(1.0, 0.5, 4.0)
    {'clip_ratio': 0.25, 'kl': 0.125, 'num_tokens': 4}
    """
    per_token = max(num_tokens, 1.0)                                        # no token: 0, not 0/0
    return {"clip_ratio": clipped / per_token, "kl": kl_sum / per_token, "num_tokens": int(num_tokens)}


def grpo_step(model, optimizer, batch: dict, advantages: torch.Tensor, ref_model=None, *, beta: float = 0.0,
              epsilon: float = 0.2, epsilon_high: float | None = None, loss_type: str = "grpo",
              micro_batch_size: int = 8, max_grad_norm: float | None = 1.0, temperature: float = 1.0,
              old_per_token_logps: torch.Tensor | None = None, use_bias_correction_kl: bool = True,
              skip_zero_advantage_kl_approx: bool = False, shared_prefix: bool = True,
              scaler=None) -> dict:
    """One GRPO update of `model` on one generation batch: skip zero-advantage rows, micro-batch, clip, step.

    batch: pack_batch(...) of N rows; advantages: [N]; old_per_token_logps: [N, T] or None (num_iterations=1).
    The loss is normalised over the whole batch (N sequences / all completion tokens, skipped rows included):
    summing the micro-batch losses gives exactly the full-batch grpo_loss (module header, choice 5).
    Settings (TRL names): beta (KL coefficient; 0.0 = no ref_model needed), epsilon / epsilon_high (clip range,
    epsilon_high=None = symmetric), loss_type ("grpo" | "dapo"), micro_batch_size (rows per forward/backward,
    bounds memory, like TRL's per_device_train_batch_size), max_grad_norm (None or 0 = no clipping), temperature
    (the sampling temperature, so log-probs are those of the distribution that was sampled),
    use_bias_correction_kl (grpo_loss; TRL's default True).
    Ours: skip_zero_advantage_kl_approx. Rows with advantage exactly 0 are skipped when that is exact (beta = 0);
    with beta > 0 they are trained for their KL term, unless this is True (then their KL term is dropped: an
    approximation that saves their forward and backward; module header, choice 5).
    Ours: shared_prefix. Policy and reference forwards encode each distinct prompt once per micro-batch
    (shared_prefix_logps: exact; the plain forward under gradient checkpointing). Rows are ordered so that a
    group's rows are consecutive; a group split by a micro-batch boundary has its prompt encoded once in each
    of its micro-batches (still exact). Skipped rows need no prefix: they are not forwarded at all.
    scaler: a torch.amp.GradScaler for fp16 mixed precision (the loss is scaled before backward and the gradients
    unscaled before clipping, so grad_norm and the clip are in true units); None otherwise. An inf/nan gradient
    (an fp16 overflow) makes the scaler skip the optimizer step and halve its scale: normal in fp16 training (the
    first steps find the scale so), reported as skipped_updates = 1 with grad_norm None.
    Returns stats: loss, kl, clip_ratio (token means over trained tokens), grad_norm (before clipping; None when
    the scaler skipped the step), skipped_updates (1 if it did, else 0), num_skipped / frac_skipped (rows not
    forwarded), num_tokens (trained completion tokens). They are read from the device once, after the step.
    Mixed precision (llm.set_precision): the micro-batches' forwards share one autocast region (_one_autocast_
    region), so each weight is cast to bf16/fp16 once per step; each backward runs with autocast off.
    """
    if beta > 0 and ref_model is None:
        raise ValueError("beta > 0 needs a ref_model (beta = 0.0 disables the reference model)")
    N, device = len(advantages), next(model.parameters()).device
    mask = batch["completion_mask"]                                                 # [N, T]
    # 1) Skip rows with advantage exactly 0 (their group's rewards were all equal): no forward, no backward.
    #    Exact only at beta = 0: with beta > 0 such a row still has a KL gradient (module header, choice 5).
    skip = beta == 0 or skip_zero_advantage_kl_approx
    kept = (advantages != 0).nonzero().squeeze(-1) if skip else torch.arange(N)   # [N_kept]
    kept = kept[mask[kept].sum(-1).argsort(stable=True)]                           # similar lengths together
    if shared_prefix:                                                              # a group's rows together
        _, prompt_of_row = prompt_groups(batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
        kept = kept[prompt_of_row[kept].argsort(stable=True)]                      # by prompt, then by length
    # 2) One denominator for the whole batch, so skipping and micro-batching are exact (grpo_loss docstring).
    normalizer = float(N) if loss_type == "grpo" else float(mask.sum().clamp_min(1))
    # 3) Every micro-batch's index work (trim_padding, prompt_groups: nonzero / unique, whose results size the
    #    tensors) on the batch's CPU tensors, before anything runs on the device: on a GPU each would be a host
    #    sync, the CPU waiting for the queued forward/backward work, between every forward and backward.
    micro_batches = [_micro_batch(batch, kept[start:start + micro_batch_size], shared_prefix, device)
                     for start in range(0, len(kept), micro_batch_size)]
    optimizer.zero_grad(set_to_none=True)
    sums = []                                                 # per micro-batch: 0-dim tensors, read after the loop
    with _one_autocast_region(model):                         # each weight cast to bf16/fp16 once per step
        for rows, mb, groups in micro_batches:
            # 4) Forward (padding columns trimmed), the reference under no_grad only when beta > 0; each prompt
            #    encoded once (shared_prefix_logps, given the micro-batch's prompt groups).
            forward = functools.partial(shared_prefix_logps, groups=groups) if shared_prefix else per_token_logps
            T_mb = mb["logits_to_keep"]
            inputs = (mb["input_ids"], mb["attention_mask"], T_mb)
            logps = forward(model, *inputs, temperature=temperature)               # [n, T_mb]
            ref = None
            if beta > 0:
                with torch.no_grad():
                    ref = forward(ref_model, *inputs, temperature=temperature)      # [n, T_mb]
            old = None if old_per_token_logps is None else old_per_token_logps[rows][:, :T_mb].to(logps)
            # 5) Loss of this micro-batch over the shared denominator; gradients accumulate across micro-batches.
            loss, mb_sums = grpo_loss(logps, old, advantages[rows], mb["completion_mask"], ref, beta,
                                      epsilon, epsilon if epsilon_high is None else epsilon_high, loss_type,
                                      normalizer=normalizer, use_bias_correction_kl=use_bias_correction_kl,
                                      read_stats=False)
            with torch.autocast(device.type, enabled=False):  # backward outside autocast (PyTorch's advice),
                (scaler.scale(loss) if scaler else loss).backward()   # the region (its weight casts) kept open
            sums.append(torch.stack([loss.detach(), *mb_sums.values()]).double())  # [4] loss, clipped, kl, tokens
    # 6) Clip the global gradient norm and step (no step at all if every row was skipped).
    grad_norm, skipped_updates = torch.zeros(()), 0
    if len(kept) > 0:
        params = [p for p in model.parameters() if p.grad is not None]
        if scaler:
            scaler.unscale_(optimizer)                                             # true gradients before the clip
            scale = scaler.get_scale()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf"))  # None/0: no clip
        if scaler:
            scaler.step(optimizer)                                                 # skipped if a gradient is inf/nan
            scaler.update()                                                        # ... and then the scale halves
            skipped_updates = int(scaler.get_scale() < scale)                      # an fp16 overflow: normal, logged
        else:
            optimizer.step()
    # 7) Read the statistics: one host sync per step. Same arithmetic as reading each micro-batch's (bit-identical).
    *per_mb, grad_norm = torch.cat(sums + [grad_norm.detach().double().reshape(1)]).tolist()
    stats = {"loss": 0.0, "kl": 0.0, "clip_ratio": 0.0, "num_tokens": 0}
    for k in range(0, len(per_mb), 4):
        mb_loss, mb_stats = per_mb[k], token_stats(*per_mb[k + 1:k + 4])
        stats["loss"] += mb_loss
        for key in ("kl", "clip_ratio"):                                           # token-weighted sums
            stats[key] += mb_stats[key] * mb_stats["num_tokens"]
        stats["num_tokens"] += mb_stats["num_tokens"]
    for key in ("kl", "clip_ratio"):
        stats[key] /= max(stats["num_tokens"], 1)
    return stats | {"grad_norm": None if skipped_updates else grad_norm, "skipped_updates": skipped_updates,
                    "num_skipped": N - len(kept), "frac_skipped": (N - len(kept)) / max(N, 1)}


def _micro_batch(batch: dict, rows: torch.Tensor, shared_prefix: bool, device) -> tuple:
    """(rows, the micro-batch's tensors trimmed and on `device`, its prompt groups on `device` or None), the
    index work done on the CPU copy (grpo_step, step 3)."""
    mb = trim_padding({k: batch[k][rows].cpu() for k in ("input_ids", "attention_mask", "completion_mask")}
                      | {"logits_to_keep": batch["logits_to_keep"]})
    groups = prompt_groups(mb["input_ids"], mb["attention_mask"], mb["logits_to_keep"]) if shared_prefix else None
    mb = {k: v.to(device) if torch.is_tensor(v) else v for k, v in mb.items()}             # ids [n, P'+T'], ...
    return rows, mb, None if groups is None else tuple(t.to(device) for t in groups)        # [U], [n]


def _one_autocast_region(model):
    """An autocast region at the model's precision (llm.set_precision's `precision_ilr`; nothing in fp32), open
    around all the forwards of one update, so that autocast casts each weight once per step, not once per
    micro-batch (llm.autocast's docstring). Closed before the optimizer step: the next step casts the new weights."""
    precision = getattr(model, "precision_ilr", "fp32")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type,
                          dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# ----------------------------------------------------------------------------------------------------------
# The calibration lesson, with numbers: `python grpo.py`
# ----------------------------------------------------------------------------------------------------------


def main():
    fmt = lambda t: "[" + ", ".join(f"{x:.3f}" for x in t.tolist()) + "]"  # no global print options changed
    cases = {"binary (correct / wrong)": torch.tensor([[1., 0, 0, 0], [1, 1, 1, 0]]),
             "multi-level (partial credit)": torch.tensor([[1., 0.5, 0, 0], [0.5, 0.5, 0, 0]])}
    for name, rewards in cases.items():                                        # [M=2, G=4]
        calibrated = perception_calibration(rewards)
        print(f"== {name}: rewards of agent 0 {rewards[0].tolist()}, of its peer {rewards[1].tolist()}")
        print(f"   calibrated rewards of agent 0      {fmt(calibrated[0])}")
        print(f"   std advantages without calibration {fmt(group_advantages(rewards)[0])}")
        print(f"   std advantages with calibration    {fmt(group_advantages(calibrated)[0])}")


if __name__ == "__main__":
    main()
