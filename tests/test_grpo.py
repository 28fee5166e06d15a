"""Tests for grpo.py: Eq. 5, advantages, the GRPO loss by hand (KL with and without TRL's bias correction),
per-token log-probs, the update step (exact skipping), and the shared-prefix forward against the plain one.

Run: .venv/bin/python -m pytest tests/test_grpo.py --doctest-modules grpo.py -q
Most model tests use a 2-layer Llama with a 100-token vocabulary built here (no tokenizer needed), so they take
seconds; one smoke test runs llm.generate -> pack_batch -> grpo_step with the `tiny` fixture (conftest.py).
"""
import math

import pytest
import torch

import grpo

LN2 = math.log(2.0)


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    return LlamaForCausalLM(config).float()


def grads(model):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def assert_same_grads(a, b, atol=1e-6):
    for ga, gb in zip(a, b):
        torch.testing.assert_close(ga, gb, atol=atol, rtol=1e-4)


# Prompts of different lengths (left padding is exercised) and completions of different lengths.
PROMPTS = [[1, 5, 9], [1, 7], [1, 2, 3, 4, 6], [1, 8, 8], [1, 3]]
COMPLETIONS = [[11, 12, 13, 2], [21, 22], [31, 32, 33], [41], [51, 52, 53, 54, 55]]


# ----------------------------------------------------------------------------------------------------------
# Eq. 5: Perception Calibration
# ----------------------------------------------------------------------------------------------------------

def test_calibration_two_agents_by_hand():
    # Agent 0 vs peer 1: peer mean 0.5, range 1 -> terms +0.5 / -0.5 (clip +-1 does not bind).
    # Agent 1 vs peer 0: peer mean 0.25, range 1 -> terms +0.75 / -0.25.
    rewards = torch.tensor([[1., 0, 0, 0], [1, 1, 0, 0]])
    expected = torch.tensor([[1.5, -0.5, -0.5, -0.5], [1.75, 1.75, -0.25, -0.25]])
    torch.testing.assert_close(grpo.perception_calibration(rewards), expected)


def test_calibration_two_agents_clip_binds_at_one():
    # Peer 1 = [0.5, 0.5, 0, 0]: mean 0.25, range 0.5. Agent 0's reward 1 -> (1-0.25)/0.5 = 1.5 -> clipped to 1.
    rewards = torch.tensor([[1., 0.5, 0, 0], [0.5, 0.5, 0, 0]])
    torch.testing.assert_close(grpo.perception_calibration(rewards)[0], torch.tensor([2.0, 1.0, -0.5, -0.5]))


def test_calibration_three_agents_clips_at_one_half_and_handles_all_equal_peer():
    rewards = torch.tensor([[1., 0, 0],        # mean 1/3, range 1
                            [1, 1, 0],         # mean 2/3, range 1
                            [0.5, 0.5, 0.5]])  # all equal: its term is +-1/2 by sign, 0 if equal
    # agent 0, R=1: peer1 (1-2/3)=1/3, peer2 +1/2 -> 1.8333; R=0: peer1 -2/3 -> clip -1/2, peer2 -1/2 -> -1
    # agent 1, R=1: peer0 (1-1/3)=2/3 -> clip 1/2, peer2 +1/2 -> 2; R=0: peer0 -1/3, peer2 -1/2 -> -0.8333
    # agent 2, R=0.5: peer0 +1/6, peer1 -1/6 -> 0.5
    expected = torch.tensor([[1 + 1 / 3 + 0.5, -1.0, -1.0],
                             [2.0, 2.0, -1 / 3 - 0.5],
                             [0.5, 0.5, 0.5]])
    torch.testing.assert_close(grpo.perception_calibration(rewards), expected)


def test_calibration_all_equal_rewards_gives_no_nan_and_no_change():
    rewards = torch.full((3, 8), 0.3)     # every peer has range 0; 0.3's float mean may be 1 ulp off 0.3
    calibrated = grpo.perception_calibration(rewards)
    assert not torch.isnan(calibrated).any()
    assert torch.equal(calibrated, rewards)


def test_calibration_accepts_a_batch_axis_and_one_agent():
    rewards = torch.rand(4, 3, 5)          # [B, M, G]
    batched = grpo.perception_calibration(rewards)
    for b in range(4):
        torch.testing.assert_close(batched[b], grpo.perception_calibration(rewards[b]))
    single = torch.rand(2, 1, 5)           # M = 1: no peer, nothing to calibrate
    assert torch.equal(grpo.perception_calibration(single), single)


# ----------------------------------------------------------------------------------------------------------
# Advantages, and the lesson: calibration is a no-op for binary rewards with std advantages
# ----------------------------------------------------------------------------------------------------------

def test_group_advantages_binary_by_hand():
    # mean 0.25; sample std sqrt((0.75^2 + 3*0.25^2)/3) = 0.5; eps = 1e-4
    adv = grpo.group_advantages(torch.tensor([1., 0, 0, 0]))
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4))
    adv_none = grpo.group_advantages(torch.tensor([1., 0, 0, 0]), scale="none")
    torch.testing.assert_close(adv_none, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_group_advantages_all_equal_group_is_exactly_zero():
    rewards = torch.tensor([[0.3, 0.3, 0.3, 0.3], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    for scale in ("std", "none"):
        adv = grpo.group_advantages(rewards, scale=scale)
        assert torch.equal(adv[:2], torch.zeros(2, 4))          # exact zeros, so grpo_step can skip them
        assert (adv[2] != 0).all()
    assert torch.equal(grpo.group_advantages(torch.tensor([[0.7]])), torch.zeros(1, 1))  # G = 1, no NaN


def test_calibration_is_a_noop_for_binary_rewards_with_std_advantages():
    # Hand cases for M = 2 and M = 3 (clip binds at 1/2 in the latter), plus random binary batches.
    cases = [torch.tensor([[1., 0, 0, 0], [1, 1, 1, 0]]),
             torch.tensor([[1., 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])]
    generator = torch.Generator().manual_seed(0)
    cases.append(torch.randint(0, 2, (16, 2, 8), generator=generator).float())
    cases.append(torch.randint(0, 2, (16, 3, 8), generator=generator).float())
    for rewards in cases:
        plain = grpo.group_advantages(rewards)
        calibrated = grpo.group_advantages(grpo.perception_calibration(rewards))
        torch.testing.assert_close(calibrated, plain, atol=1e-3, rtol=0)   # equal up to the std eps


def test_calibration_only_rescales_binary_mean_only_advantages():
    # Agent 0 = [1,0,0,0], peer [1,1,1,0] (mean 0.75, range 1): Rbar = R + (R - 0.75) = 2R - 0.75, slope 2.
    rewards = torch.tensor([[1., 0, 0, 0], [1, 1, 1, 0]])
    plain = grpo.group_advantages(rewards, scale="none")
    calibrated = grpo.group_advantages(grpo.perception_calibration(rewards), scale="none")
    torch.testing.assert_close(calibrated[0], 2 * plain[0])


def test_calibration_changes_std_advantages_for_multi_level_rewards():
    # Partial credit. Agent 0 = [1, 0.5, 0, 0]; peer [0.5, 0.5, 0, 0] (mean 0.25, range 0.5; the clip binds at R=1)
    # Rbar = [2, 1, -0.5, -0.5]: not affine in R (0 -> -0.5, 0.5 -> 1, 1 -> 2).
    rewards = torch.tensor([[1., 0.5, 0, 0], [0.5, 0.5, 0, 0]])
    plain = grpo.group_advantages(rewards)[0]
    calibrated = grpo.group_advantages(grpo.perception_calibration(rewards))[0]
    # by hand: plain centred [0.625, 0.125, -0.375, -0.375], sample std sqrt(0.6875/3) = 0.47871
    #          calibrated centred [1.5, 0.5, -1, -1], sample std sqrt(4.5/3) = 1.22474
    torch.testing.assert_close(plain, torch.tensor([0.625, 0.125, -0.375, -0.375]) / (0.478714 + 1e-4))
    torch.testing.assert_close(calibrated, torch.tensor([1.5, 0.5, -1, -1]) / (1.224745 + 1e-4))
    assert calibrated[1] - plain[1] > 0.14      # the half-right answer gains 0.147 of advantage
    # Correctness + 0.1 format term; the peer is wrong every time and differs only in format:
    # peer [0.1, 0.1, 0, 0] (mean 0.05, range 0.1), agent [1.1, 1.0, 0.1, 0.0] -> terms [1, 1, 0.5, -0.5].
    rewards = torch.tensor([[1.1, 1.0, 0.1, 0.0], [0.1, 0.1, 0.0, 0.0]])
    calibrated_rewards = grpo.perception_calibration(rewards)
    torch.testing.assert_close(calibrated_rewards[0], torch.tensor([2.1, 2.0, 0.6, -0.5]))
    difference = grpo.group_advantages(calibrated_rewards)[0] - grpo.group_advantages(rewards)[0]
    assert difference.abs().max() > 0.1


# ----------------------------------------------------------------------------------------------------------
# The GRPO loss by hand
# ----------------------------------------------------------------------------------------------------------

def loss_example():
    """2 sequences x 3 tokens; the last token of sequence 1 is padding (its values must not matter)."""
    old = torch.full((2, 3), -1.0)
    ratio = torch.tensor([[1.5, 1.0, 0.7], [0.5, 1.1, 2.0]])
    logps = old + ratio.log()
    ref = logps + torch.tensor([[0.0, LN2, -LN2], [LN2, -LN2, 3.0]])   # ref - logp
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages = torch.tensor([1.0, -2.0])
    return logps, old, advantages, mask, ref


def test_grpo_loss_matches_hand_computation_with_clipping_and_kl():
    logps, old, advantages, mask, ref = loss_example()
    # Sequence 0 (A=+1): pg_loss1 = -r = [-1.5, -1, -0.7]; pg_loss2 = -clip(r, 0.8, 1.2) = [-1.2, -1, -0.8]
    #   max -> [-1.2, -1, -0.7] (clip binds at token 0). Sequence 1 (A=-2): pg_loss1 = 2r = [1, 2.2];
    #   pg_loss2 = 2 clip(r) = [1.6, 2.2] -> max [1.6, 2.2] (clip binds at token 0).
    # k3 KL: d=0 -> 0; d=ln2 -> 2 - ln2 - 1; d=-ln2 -> 0.5 + ln2 - 1; each sequence's pair sums to 0.5.
    # beta=0.1: sequence sums -2.9 + 0.05 = -2.85 and 3.8 + 0.05 = 3.85; lengths 3 and 2.
    kwargs = dict(ref_per_token_logps=ref, beta=0.1, epsilon_low=0.2, epsilon_high=0.2, use_bias_correction_kl=False)
    loss, stats = grpo.grpo_loss(logps, old, advantages, mask, loss_type="grpo", **kwargs)
    assert loss.item() == pytest.approx((-2.85 / 3 + 3.85 / 2) / 2)   # 0.4875
    assert stats["clip_ratio"] == pytest.approx(2 / 5)
    assert stats["kl"] == pytest.approx(1.0 / 5)                       # (0.5 + 0.5) / 5 tokens
    assert stats["num_tokens"] == 5
    loss, _ = grpo.grpo_loss(logps, old, advantages, mask, loss_type="dapo", **kwargs)
    assert loss.item() == pytest.approx((-2.85 + 3.85) / 5)            # 0.2


def test_bias_corrected_kl_is_the_k3_term_times_the_ratio_by_hand():
    # Same example, use_bias_correction_kl=True (TRL 1.16's default): each token's k3 term times its ratio.
    # Sequence 0: ratio [1.5, 1, 0.7] x k3 [0, 1 - ln2, ln2 - 0.5]; sequence 1: ratio [0.5, 1.1] x [1 - ln2, ln2 - 0.5]
    logps, old, advantages, mask, ref = loss_example()
    kl0 = 0.0 + (1 - LN2) + 0.7 * (LN2 - 0.5)
    kl1 = 0.5 * (1 - LN2) + 1.1 * (LN2 - 0.5)
    loss, stats = grpo.grpo_loss(logps, old, advantages, mask, ref, beta=0.1)   # the default is corrected
    assert loss.item() == pytest.approx(((-2.9 + 0.1 * kl0) / 3 + (3.8 + 0.1 * kl1) / 2) / 2)
    assert stats["kl"] == pytest.approx((kl0 + kl1) / 5)                        # the corrected term, as TRL logs it


def test_bias_corrected_kl_gradient_on_policy_is_logp_minus_ref_by_hand():
    # On-policy (old = None, ratio = 1) the KL VALUES agree, the gradients do not. One sequence, d = ref - logp:
    #   plain k3:  d kl / d logp = 1 - exp(d)      -> [0, 1 - 2, 1 - 0.5] = [0, -1, 0.5]
    #   corrected: d (ratio kl) / d logp = -d      -> [0, -ln2, +ln2]
    # With A = 0 only the KL term has a gradient: beta * that / 3 tokens / 1 sequence.
    d = torch.tensor([[0.0, LN2, -LN2]])
    mask, advantages = torch.ones(1, 3), torch.zeros(1)
    results = {}
    for corrected in (False, True):
        logps = torch.full((1, 3), -1.0, requires_grad=True)
        loss, _ = grpo.grpo_loss(logps, None, advantages, mask, logps.detach() + d, beta=0.3,
                                     use_bias_correction_kl=corrected)
        loss.backward()
        results[corrected] = (loss.item(), logps.grad)
    torch.testing.assert_close(results[False][1], 0.3 * torch.tensor([[0.0, -1.0, 0.5]]) / 3)
    torch.testing.assert_close(results[True][1], 0.3 * torch.tensor([[0.0, -LN2, LN2]]) / 3)
    assert results[True][0] == pytest.approx(results[False][0])       # same value: 0.3 * (0 + 0.5) / 3


def test_grpo_loss_without_kl_and_with_asymmetric_clip():
    logps, old, advantages, mask, _ = loss_example()
    loss, stats = grpo.grpo_loss(logps, old, advantages, mask)        # beta = 0: no reference needed
    assert loss.item() == pytest.approx((-2.9 / 3 + 3.8 / 2) / 2)
    assert stats["kl"] == 0.0
    loss, _ = grpo.grpo_loss(logps, old, advantages, mask, loss_type="dapo")
    assert loss.item() == pytest.approx((-2.9 + 3.8) / 5)
    # epsilon_high = 0.6: ratio 1.5 < 1.6 is no longer clipped for A > 0: sequence 0 sums to -1.5 - 1 - 0.7
    loss, stats = grpo.grpo_loss(logps, old, advantages, mask, epsilon_high=0.6)
    assert loss.item() == pytest.approx((-3.2 / 3 + 3.8 / 2) / 2)
    assert stats["clip_ratio"] == pytest.approx(1 / 5)


def test_grpo_loss_gradient_with_old_none_is_minus_advantage_over_length():
    _, _, advantages, mask, _ = loss_example()
    logps = torch.full((2, 3), -1.0, requires_grad=True)
    loss, stats = grpo.grpo_loss(logps, None, advantages, mask)       # ratio 1, loss = -mean A = 0.5
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    # d loss / d logp[n,t] = -A[n] * mask[n,t] / len[n] / N
    expected = torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [0.5, 0.5, 0.0]])
    torch.testing.assert_close(logps.grad, expected)
    assert stats["clip_ratio"] == 0.0


def test_one_real_token_is_divided_by_one_in_both_loss_types():
    """One real completion token (the second is padding), ratio 1, A = 2: the per-token loss is -2 and both
    normalisations divide by 1 token. Guards the clamp_min(1) that only stops a 0/0 on an all-padding row:
    clamp_min(2) there halves every one-token completion's loss (mutmut: grpo_loss 69 "grpo", 86 "dapo")."""
    logps, mask, advantages = torch.full((1, 2), -1.0), torch.tensor([[1, 0]]), torch.tensor([2.0])
    for loss_type in ("grpo", "dapo"):
        loss, stats = grpo.grpo_loss(logps, None, advantages, mask, loss_type=loss_type)
        assert loss.item() == pytest.approx(-2.0) and stats["num_tokens"] == 1


def test_grpo_loss_keeps_the_log_probs_dtype_when_advantages_are_float64():
    """Advantages built from numpy rewards are float64; the loss must stay in the log-probs' dtype (and on
    their device: in grpo_step the advantages stay on the CPU while the log-probs are on the GPU). Without
    advantages.to(per_token_logps) the loss is float64 here (mutmut: grpo_loss 13)."""
    logps = torch.full((2, 2), -1.0)
    loss, _ = grpo.grpo_loss(logps, None, torch.tensor([1.0, -3.0], dtype=torch.float64), torch.ones(2, 2))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(1.0)   # -(1 - 3) / 2


def test_grpo_loss_names_the_bad_loss_type():
    with pytest.raises(ValueError, match="loss_type must be 'grpo' or 'dapo', got 'ppo'"):
        grpo.grpo_loss(torch.zeros(1, 1), None, torch.zeros(1), torch.ones(1, 1), loss_type="ppo")


# ----------------------------------------------------------------------------------------------------------
# Per-token log-probabilities
# ----------------------------------------------------------------------------------------------------------

def test_pack_batch_pads_prompts_left_and_completions_right():
    batch = grpo.pack_batch(PROMPTS[:2], COMPLETIONS[:2], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 5, 9, 11, 12, 13, 2], [0, 1, 7, 21, 22, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0, 0]]
    assert batch["completion_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["logits_to_keep"] == 4


def test_pack_batch_masks_are_integer_tensors():
    """per_token_logps builds position_ids from attention_mask.cumsum(-1): a float mask gives float position
    ids, which a model with a learned position table (GPT-2's wpe) refuses; RoPE models (Llama, Qwen) hide
    it (mutmut: pack_batch 23, 25, torch.zeros without dtype=torch.long)."""
    batch = grpo.pack_batch(PROMPTS[:2], COMPLETIONS[:2], pad_id=0)
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].dtype == torch.long and batch["completion_mask"].dtype == torch.long


def test_pack_batch_names_both_lengths_when_they_differ():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        grpo.pack_batch(PROMPTS[:2], COMPLETIONS[:1], pad_id=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_per_token_logps_equal_a_naive_forward_per_sequence(temperature):
    model = tiny_llama()
    batch = grpo.pack_batch(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        packed = grpo.per_token_logps(model, batch["input_ids"], batch["attention_mask"],
                                      batch["logits_to_keep"], temperature=temperature)  # [N, T]
        for n, (prompt, completion) in enumerate(zip(PROMPTS, COMPLETIONS)):
            ids = torch.tensor([prompt + completion])
            logits = model(ids).logits[0] / temperature                            # [P+T_n, V], no padding
            logprobs = torch.log_softmax(logits, -1)[len(prompt) - 1:-1]           # positions predicting completion
            naive = logprobs.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
            torch.testing.assert_close(packed[n, :len(completion)], naive, atol=1e-5, rtol=1e-5)
    assert not torch.isnan(packed).any()


def test_selective_log_softmax_equals_log_softmax_gather():
    logits = torch.randn(3, 5, 17)
    index = torch.randint(0, 17, (3, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, index[..., None]).squeeze(-1)
    torch.testing.assert_close(grpo.selective_log_softmax(logits, index), expected)


# ----------------------------------------------------------------------------------------------------------
# The update step
# ----------------------------------------------------------------------------------------------------------

def completion_logps(model, batch):
    with torch.no_grad():
        logps = grpo.per_token_logps(model, batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    return (logps * batch["completion_mask"]).sum(-1)                          # [N] log p(completion)


def test_one_step_raises_positive_and_lowers_negative_advantage_completions():
    model = tiny_llama()
    batch = grpo.pack_batch([[1, 5, 9], [1, 5, 9]], [[11, 12, 13], [40, 41, 42]], pad_id=0)
    before = completion_logps(model, batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = grpo.grpo_step(model, optimizer, batch, torch.tensor([1.0, -1.0]))
    after = completion_logps(model, batch)
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["num_skipped"] == 0 and stats["num_tokens"] == 6 and stats["grad_norm"] > 0


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_zero_advantage_samples_are_skipped_and_skipping_is_exact(loss_type):
    """grpo_step never forwards rows with A = 0, yet gives the gradient of the full-batch loss with them in."""
    model = tiny_llama()
    batch = grpo.pack_batch(PROMPTS, COMPLETIONS, pad_id=0)
    advantages = torch.tensor([1.0, 0.0, -0.5, 0.0, 2.0])
    # Reference: forward and backward every row, the zero-advantage ones included.
    logps = grpo.per_token_logps(model, batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    loss, _ = grpo.grpo_loss(logps, None, advantages, batch["completion_mask"], loss_type=loss_type)
    loss.backward()
    full = grads(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)                    # keeps the weights and the grads
    stats = grpo.grpo_step(model, optimizer, batch, advantages, loss_type=loss_type, max_grad_norm=None)
    assert stats["num_skipped"] == 2 and stats["frac_skipped"] == pytest.approx(0.4)
    assert stats["num_tokens"] == 4 + 3 + 5                                    # only rows 0, 2, 4 were forwarded
    assert stats["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert_same_grads(grads(model), full)


def full_forward_loss(model, ref_model, batch, advantages, rows, loss_type, beta):
    """The reference computation: forward `rows` only, but normalise over the whole batch (as grpo_step)."""
    args = (batch["input_ids"][rows], batch["attention_mask"][rows], batch["logits_to_keep"])
    logps = grpo.per_token_logps(model, *args)
    with torch.no_grad():
        ref = grpo.per_token_logps(ref_model, *args)
    mask = batch["completion_mask"]
    normalizer = float(len(mask)) if loss_type == "grpo" else float(mask.sum())
    loss, _ = grpo.grpo_loss(logps, None, advantages[rows], mask[rows], ref, beta, loss_type=loss_type,
                             normalizer=normalizer)
    return loss


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_with_beta_zero_advantage_rows_are_trained_and_the_step_equals_the_full_forward(loss_type):
    """beta > 0: a zero-advantage row still has a KL gradient, so grpo_step forwards it (exact, TRL's loss);
    skip_zero_advantage_kl_approx=True skips it and its KL term (a different, named approximation)."""
    model, ref_model = tiny_llama(seed=0), tiny_llama(seed=1)
    batch = grpo.pack_batch(PROMPTS, COMPLETIONS, pad_id=0)
    advantages = torch.tensor([1.0, 0.0, -0.5, 0.0, 2.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    expected = {}
    for name, rows in (("exact", [0, 1, 2, 3, 4]), ("approx", [0, 2, 4])):
        optimizer.zero_grad()
        loss = full_forward_loss(model, ref_model, batch, advantages, rows, loss_type, beta=0.1)
        loss.backward()
        expected[name] = (loss.item(), grads(model))
    stats = grpo.grpo_step(model, optimizer, batch, advantages, ref_model, beta=0.1, loss_type=loss_type,
                           max_grad_norm=None, micro_batch_size=2)
    assert stats["num_skipped"] == 0 and stats["num_tokens"] == sum(map(len, COMPLETIONS))
    assert stats["loss"] == pytest.approx(expected["exact"][0], abs=1e-6)
    assert_same_grads(grads(model), expected["exact"][1])
    stats = grpo.grpo_step(model, optimizer, batch, advantages, ref_model, beta=0.1, loss_type=loss_type,
                           max_grad_norm=None, micro_batch_size=2, skip_zero_advantage_kl_approx=True)
    assert stats["num_skipped"] == 2
    assert stats["loss"] == pytest.approx(expected["approx"][0], abs=1e-6)
    assert_same_grads(grads(model), expected["approx"][1])
    difference = max((a - b).abs().max().item() for a, b in zip(expected["exact"][1], expected["approx"][1]))
    assert difference > 1e-4                                       # the approximation does change the gradient


def test_zero_advantage_samples_only_enter_the_denominator():
    # loss_type "grpo" divides by all N rows: removing the 2 zero rows from a batch of 5 scales the gradient 5/3.
    model = tiny_llama()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    grpo.grpo_step(model, optimizer, grpo.pack_batch(PROMPTS, COMPLETIONS, 0),
                   torch.tensor([1.0, 0.0, -0.5, 0.0, 2.0]), max_grad_norm=None)
    with_zero_rows = grads(model)
    keep = [0, 2, 4]
    grpo.grpo_step(model, optimizer, grpo.pack_batch([PROMPTS[i] for i in keep], [COMPLETIONS[i] for i in keep], 0),
                   torch.tensor([1.0, -0.5, 2.0]), max_grad_norm=None)
    assert_same_grads([g * 5 / 3 for g in with_zero_rows], grads(model))


def test_all_zero_advantages_skip_the_whole_step():
    model = tiny_llama()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = grpo.grpo_step(model, optimizer, grpo.pack_batch(PROMPTS, COMPLETIONS, 0), torch.zeros(5))
    assert stats["num_skipped"] == 5 and stats["num_tokens"] == 0 and stats["grad_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_micro_batching_gives_the_same_gradient_as_one_batch(loss_type):
    model = tiny_llama(seed=0)
    ref_model = tiny_llama(seed=1)                 # a different reference, so the KL term is not zero
    batch = grpo.pack_batch(PROMPTS, COMPLETIONS, pad_id=0)
    advantages = torch.tensor([1.0, -1.0, -0.5, 0.5, 2.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    results = []
    for micro_batch_size in (5, 2, 1):
        stats = grpo.grpo_step(model, optimizer, batch, advantages, ref_model, beta=0.05, loss_type=loss_type,
                               micro_batch_size=micro_batch_size, max_grad_norm=None)
        results.append((stats, grads(model)))
    (one_stats, one_grads), *others = results
    assert one_stats["kl"] > 0
    for stats, micro_grads in others:
        assert stats["loss"] == pytest.approx(one_stats["loss"], abs=1e-6)
        assert stats["kl"] == pytest.approx(one_stats["kl"], rel=1e-5)
        assert_same_grads(micro_grads, one_grads)


def test_grad_norm_is_clipped_and_reported_before_clipping():
    model = tiny_llama()
    batch = grpo.pack_batch(PROMPTS, COMPLETIONS, pad_id=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = grpo.grpo_step(model, optimizer, batch, torch.tensor([1.0, -1.0, -0.5, 0.5, 2.0]), max_grad_norm=1e-3)
    clipped = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads(model)]))
    assert stats["grad_norm"] > 1e-3
    assert clipped.item() == pytest.approx(1e-3, rel=1e-3)


def test_beta_without_reference_model_is_an_error():
    model = tiny_llama()
    with pytest.raises(ValueError, match="ref_model"):
        grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=0.0),
                       grpo.pack_batch(PROMPTS, COMPLETIONS, 0), torch.ones(5), beta=0.1)


def test_smoke_generate_then_update_with_the_generators_token_ids(tiny):
    """The ids llm.generate returned go straight into pack_batch (no re-tokenisation) and one update runs."""
    import llm
    model, tok = tiny
    model = type(model)(model.config)                     # a fresh random model: the session fixture stays untouched
    out = llm.generate(model, tok, ["What is 2 + 3?", "Name a prime."], n=2, temperature=1.0,
                       max_new_tokens=6, seed=0)
    prompt_ids = [p for p, row in zip(out.prompt_ids, out.completion_ids) for _ in row]   # [B*G]
    completion_ids = [c for row in out.completion_ids for c in row]                      # [B*G]
    batch = grpo.pack_batch(prompt_ids, completion_ids, pad_id=tok.pad_token_id)
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])                                     # [B, G]; group 1 all equal
    advantages = grpo.group_advantages(rewards).flatten()                                # [B*G]
    stats = grpo.grpo_step(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batch, advantages)
    assert stats["num_skipped"] == 2 and stats["num_tokens"] == sum(len(c) for c in completion_ids[:2])
    assert math.isfinite(stats["loss"]) and stats["grad_norm"] > 0


# ----------------------------------------------------------------------------------------------------------
# Shared-prefix forward: each prompt encoded once for its G rows, same log-probs and gradients as the plain one
# ----------------------------------------------------------------------------------------------------------

# Three questions x G = 3 on llm.tiny_model's tokenizer: prompts of 4, 2 and 6 tokens (left padding), completions
# of 1 to 5 tokens (right padding); rows interleaved so that grpo_step has to bring each group together.
GROUP_PROMPTS = [[1, 520, 33, 901], [1, 77], [1, 300, 301, 302, 303, 304]]
GROUP_COMPLETIONS = [[[11, 12, 13, 2], [21, 22], [31]],
                     [[41, 42, 43, 44, 45], [51], [61, 62, 63]],
                     [[71, 72], [81, 82, 83], [91, 92, 93, 94]]]
ORDER = [0, 3, 6, 1, 4, 7, 2, 5, 8]                   # row r = question ORDER[r] // 3, sample ORDER[r] % 3


def grouped_batch(pad_id):
    prompts = [GROUP_PROMPTS[i // 3] for i in ORDER]
    completions = [GROUP_COMPLETIONS[i // 3][i % 3] for i in ORDER]
    return grpo.pack_batch(prompts, completions, pad_id)


def fresh_tiny(tiny, seed):
    model, _ = tiny
    torch.manual_seed(seed)
    return type(model)(model.config)                 # a fresh random model: the session fixture stays untouched


def embedding_calls(model):
    """Record the [rows, tokens] shape of every forward through the model (its input embedding)."""
    shapes = []
    model.get_input_embeddings().register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    return shapes


def test_prompt_groups_finds_the_rows_of_each_question():
    batch = grouped_batch(pad_id=0)
    first_row, prompt_of_row = grpo.prompt_groups(batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    assert len(first_row) == 3
    question = torch.tensor([i // 3 for i in ORDER])
    for r in range(9):                               # same prompt index <=> same question
        assert torch.equal(prompt_of_row == prompt_of_row[r], question == question[r])
    assert torch.equal(prompt_of_row[first_row], torch.arange(3))
    assert sorted(first_row.tolist()) == [0, 1, 2]   # rows 0, 1, 2 are the first of questions 0, 1, 2


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prefix_logps_equal_the_plain_forward_in_value_and_gradient(tiny, temperature):
    model = fresh_tiny(tiny, seed=3)
    batch = grouped_batch(tiny[1].pad_token_id)
    args = (batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    mask = batch["completion_mask"].bool()
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))   # any loss of the log-probs
    results = []
    for forward in (grpo.per_token_logps, grpo.shared_prefix_logps):
        model.zero_grad()
        shapes = embedding_calls(model)
        logps = forward(model, *args, temperature=temperature)                    # [9, 5]
        (logps * weights * mask).sum().backward()
        results.append((logps.detach(), grads(model), shapes))
        model.get_input_embeddings()._forward_hooks.clear()
    (plain, plain_grads, plain_shapes), (shared, shared_grads, shared_shapes) = results
    torch.testing.assert_close(shared[mask], plain[mask], atol=1e-5, rtol=1e-5)
    assert_same_grads(shared_grads, plain_grads, atol=1e-6)
    assert plain_shapes == [(9, 6 + 5)]                                           # 9 rows x (P + T)
    assert shared_shapes == [(3, 6), (9, 4)]                                      # 3 prompts once, then T - 1


def test_shared_prefix_logps_with_one_token_completions_need_no_completion_forward(tiny):
    model = fresh_tiny(tiny, seed=4)
    batch = grpo.pack_batch([[1, 5, 9]] * 2 + [[1, 7]] * 2, [[11], [12], [13], [14]], tiny[1].pad_token_id)
    args = (batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    shapes = embedding_calls(model)
    with torch.no_grad():
        torch.testing.assert_close(grpo.shared_prefix_logps(model, *args), grpo.per_token_logps(model, *args),
                                   atol=1e-5, rtol=1e-5)
    assert shapes == [(2, 3), (4, 4)]                  # the shared forward (2 prompts only), then the plain one


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.05])
@pytest.mark.parametrize("micro_batch_size", [9, 4])
def test_grpo_step_with_shared_prefix_equals_the_plain_step(tiny, loss_type, beta, micro_batch_size):
    """Policy and reference forwards, padding, one skipped (all-equal) group at beta 0 / trained at beta > 0,
    and micro_batch_size 4 splitting groups of 3 across micro-batches: loss, kl and gradients all equal."""
    model, ref_model = fresh_tiny(tiny, seed=0), fresh_tiny(tiny, seed=1)
    batch = grouped_batch(tiny[1].pad_token_id)
    rewards = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])      # question 1: all equal
    advantages = grpo.group_advantages(rewards).flatten()[ORDER]                    # [9] in row order
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    results = []
    for shared_prefix in (False, True):
        stats = grpo.grpo_step(model, optimizer, batch, advantages, ref_model, beta=beta, loss_type=loss_type,
                               micro_batch_size=micro_batch_size, max_grad_norm=None, shared_prefix=shared_prefix)
        results.append((stats, grads(model)))
    (plain, plain_grads), (shared, shared_grads) = results
    assert shared["num_skipped"] == plain["num_skipped"] == (3 if beta == 0 else 0)
    assert shared["loss"] == pytest.approx(plain["loss"], abs=1e-6)
    assert shared["kl"] == pytest.approx(plain["kl"], rel=1e-4, abs=1e-9)
    assert shared["num_tokens"] == plain["num_tokens"]
    assert_same_grads(shared_grads, plain_grads, atol=1e-6)
    assert max(g.abs().max().item() for g in plain_grads) > 0


@pytest.mark.parametrize("micro_batch_size, expected", [
    (9, [(2, 6), (6, 3)]),                       # questions 0 and 2 in one micro-batch: 2 prompts, 6 completions
    (3, [(1, None), (3, None), (1, None), (3, None)])])   # one question per micro-batch
def test_each_prompt_is_encoded_once_per_micro_batch_and_skipped_groups_not_at_all(tiny, micro_batch_size,
                                                                                     expected):
    model = fresh_tiny(tiny, seed=0)
    rewards = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])      # question 1 skipped (beta 0)
    advantages = grpo.group_advantages(rewards).flatten()[ORDER]
    shapes = embedding_calls(model)
    grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=0.0), grouped_batch(tiny[1].pad_token_id),
                   advantages, micro_batch_size=micro_batch_size)
    assert [(rows, tokens if want is not None else None) for (rows, tokens), (_, want) in zip(shapes, expected)] \
        == expected and len(shapes) == len(expected)


def test_hf_gradient_checkpointing_drops_the_kv_cache_so_the_shared_forward_falls_back(tiny):
    """Why the fallback: with HF checkpointing on, in training mode, a decoder layer ignores past_key_values,
    so logits after a prompt cache equal logits with no prompt at all. If this test fails, transformers changed
    and the fallback in shared_prefix_logps may be lifted."""
    from transformers import DynamicCache
    model = fresh_tiny(tiny, seed=0)
    model.activation_checkpointing_enable()
    model.train()
    assert grpo.uses_checkpointing(model) and not grpo.uses_checkpointing(model.eval())
    model.train()
    prompt, completion = torch.tensor([[1, 5, 9]]), torch.tensor([[11, 12]])
    cache = DynamicCache(config=model.config)
    model(input_ids=prompt, past_key_values=cache, use_cache=True)
    with_cache = model(input_ids=completion, position_ids=torch.tensor([[3, 4]]), past_key_values=cache).logits
    alone = model(input_ids=completion, position_ids=torch.tensor([[3, 4]])).logits
    torch.testing.assert_close(with_cache, alone)


def test_grpo_step_with_gradient_checkpointing_equals_the_step_without(tiny):
    model, ref_model = fresh_tiny(tiny, seed=0), fresh_tiny(tiny, seed=1)
    batch = grouped_batch(tiny[1].pad_token_id)
    advantages = torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0, -0.5, -1.0, 1.0, 0.5])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable()
        model.train()
        grpo.grpo_step(model, optimizer, batch, advantages, ref_model, beta=0.05, max_grad_norm=None)
        results.append(grads(model))
    assert_same_grads(results[1], results[0], atol=1e-6)


def test_reward_stats_reads_groups_on_the_last_axis_for_any_leading_shape_and_g_2():
    """reward_stats([..., G]): std and the zero-std test over G (the last axis) whatever the leading axes, and the
    sample std also for G = 2 (mutants: std/amax/amin over axis +1, `shape[+1] > 1`, `shape[-1] > 2`)."""
    s = grpo.reward_stats(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))                  # G = 2: std(1, 0) = sqrt(1/2)
    assert s["reward_std"] == pytest.approx(0.5 ** 0.5 / 2) and s["frac_reward_zero_std"] == 0.5
    r = torch.tensor([[[0.0, 0.0, 3.0]], [[1.0, 1.0, 1.0]]])                        # [agents 2, groups 1, G 3]
    s = grpo.reward_stats(r)                                   # std(0, 0, 3) = sqrt((1 + 1 + 4) / 2) = sqrt(3)
    assert s == pytest.approx({"reward": 1.0, "reward_std": 3 ** 0.5 / 2, "frac_reward_zero_std": 0.5})


def test_calibration_clip_share_counts_the_groups_where_eq5_clips():
    # agent 0 [1, .25, 0, 0] vs peer [.25, 0, 0, 0] (mean 1/16, range 1/4): z = 3.75 for its 1 -> binds;
    # agent 1 vs peer agent 0 (mean 5/16, range 1): |z| <= 5/16 -> does not. Second question: both span [0, 1].
    rewards = torch.tensor([[[1.0, 0.25, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0]],
                            [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])          # [B=2, M=2, G=4]
    assert grpo.calibration_clip_share(rewards) == 0.25
    assert grpo.calibration_clip_share(rewards[:1]) == 0.5
    # an all-equal peer (range 0): binds unless the reward equals its value (module header, choice 2)
    assert grpo.calibration_clip_share(torch.tensor([[0.0, 0.0], [0.0, 0.0]])) == 0.0
    assert grpo.calibration_clip_share(torch.tensor([[1.0, 0.0], [0.0, 0.0]])) == 0.5
    assert grpo.calibration_clip_share(torch.tensor([[1.0, 0.0]])) == 0.0                      # M = 1: no peer
    # with three agents the bound is 1/2: z = (1 - 0.5) / 1 = 0.5 does not exceed it, 0.75 / 1 does
    three = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert grpo.calibration_clip_share(three) == 0.0
    assert grpo.calibration_clip_share(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])) > 0


def test_where_the_clip_binds_on_three_levels_calibration_changes_the_std_advantages():
    rewards = torch.tensor([[1.0, 0.25, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0]])
    assert grpo.calibration_clip_share(rewards) > 0
    plain = grpo.group_advantages(rewards)[0]
    calibrated = grpo.group_advantages(grpo.perception_calibration(rewards))[0]
    assert not torch.allclose(plain, calibrated, atol=1e-3)
