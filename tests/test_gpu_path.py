"""The mixed-precision (GPU) path, checked on the CPU (issue 26): bf16/fp16 autocast runs on the CPU, so what
autocast casts, what the KV cache stores, what autograd keeps, where the temperature divides, what a gradient-scaler
skip reports and how often grpo_step reads the device can all be counted here. (The precision each GPU gets is in
tests/test_precision.py: the compute capability is faked there.)"""
import copy
import importlib.util
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import data
import grpo
import ilr
import llm
from conftest import ROOT


def load_bench(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bf16_tiny():
    """The tiny model with bf16 mixed precision (fp32 weights, forwards under bf16 autocast), its own copy."""
    return llm.tiny_model(seed=0, precision="bf16")


class WeightCasts(TorchDispatchMode):
    """Counts `aten::_to_copy` calls whose input is one of `model`'s parameters: autocast's weight casts."""

    def __init__(self, model):
        super().__init__()
        self.params, self.casts = {p.data_ptr() for p in model.parameters()}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in self.params:
            self.casts += 1
        return func(*args, **(kwargs or {}))


def count_forwards(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


def linear_count(model) -> int:
    return sum(isinstance(m, torch.nn.Linear) for m in model.modules())       # tiny: 2 layers x 7 + lm_head = 15


def random_batch(rows_per_prompt=3, prompts=(9, 12), seed=0):
    """A pack_batch of len(prompts) questions with rows_per_prompt completions each (random ids, lengths 3-7)."""
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = [torch.randint(0, 1000, (n,), generator=gen).tolist() for n in prompts]
    P = [p for p in prompt_ids for _ in range(rows_per_prompt)]
    C = [torch.randint(0, 1000, (3 + k % 5,), generator=gen).tolist() for k in range(len(P))]
    return grpo.pack_batch(P, C, pad_id=0)


# ----------------------------------------------------------------------------------------------------------
# Item 2: one autocast region per generate / per update: each weight matrix cast once
# ----------------------------------------------------------------------------------------------------------

def test_one_generate_casts_each_weight_matrix_once_under_bf16_autocast(bf16_tiny):
    """Autocast keeps its cast weights only while the outermost region is open: one region per forward (each
    decoding step) re-cast every weight at every step (15 linears x 5 forwards = 75 here); one region around the
    whole generate casts each once. Same samples: without the cache (weights that do not require grad are never
    cached) every forward casts again and samples the same tokens."""
    model, tok = bf16_tiny
    calls, handle = count_forwards(model)
    kwargs = dict(n=2, temperature=1.0, max_new_tokens=4, seed=0)
    try:
        with WeightCasts(model) as cached:
            out = llm.generate(model, tok, ["What is 2 + 3?"], **kwargs)
        forwards = len(calls)                                                 # prefill + 4 decoding steps = 5
        model.requires_grad_(False)
        with WeightCasts(model) as uncached:
            again = llm.generate(model, tok, ["What is 2 + 3?"], **kwargs)
    finally:
        model.requires_grad_(True)
        handle.remove()
    assert forwards == 5 and uncached.casts == linear_count(model) * forwards == 75
    assert cached.casts == linear_count(model) == 15
    assert again.completion_ids == out.completion_ids


def test_one_grpo_step_casts_each_weight_once_across_its_micro_batches(bf16_tiny):
    """The micro-batches of one update share one autocast region (their backward runs with autocast off): each
    weight is cast once per step, not once per forward (5 here: 3 micro-batches; the two that hold one prompt
    twice run a prompt forward and a completion forward, the middle one a plain forward)."""
    model, _ = bf16_tiny
    model = copy.deepcopy(model).train()
    calls, handle = count_forwards(model)
    with WeightCasts(model) as counter:
        stats = grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=0.0), random_batch(),
                               torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0]), micro_batch_size=2)
    handle.remove()
    assert len(calls) == 5 and stats["num_tokens"] > 0 and all(p.grad is not None for p in model.parameters())
    assert counter.casts == linear_count(model)                              # ffd84a8: 15 x 5 = 75


# ----------------------------------------------------------------------------------------------------------
# Item 3: the KV cache stores K and V in the autocast dtype
# ----------------------------------------------------------------------------------------------------------

def test_the_kv_cache_keeps_keys_and_values_in_the_autocast_dtype_with_the_same_samples(bf16_tiny, monkeypatch):
    """Under bf16 autocast RoPE gives fp32 keys (bf16 projection x fp32 cos/sin) beside bf16 values; the cache
    stores both in bf16, which attention casts them to anyway: the samples are those of transformers' own
    DynamicCache, which keeps the fp32 keys. In fp32 the cache stays fp32."""
    from transformers import DynamicCache

    model, tok = bf16_tiny
    caches = []
    monkeypatch.setattr(llm, "kv_cache", lambda m, max_len=None: caches.append(llm_kv_cache(m, max_len)) or caches[-1])
    prompts, kwargs = ["What is 2 + 3?", "Name a prime number."], dict(max_new_tokens=4)
    greedy = llm.generate(model, tok, prompts, **kwargs)                      # the empty cache model.generate fills
    sampled = llm.generate(model, tok, prompts, n=2, temperature=1.0, seed=0, **kwargs)   # the prefilled cache
    assert len(caches) == 2
    for cache in caches:
        assert {(layer.keys.dtype, layer.values.dtype) for layer in cache.layers} == {(torch.bfloat16,) * 2}
    monkeypatch.setattr(llm, "kv_cache", lambda m, max_len=None: DynamicCache(config=m.config))   # fp32 keys
    assert llm.generate(model, tok, prompts, **kwargs).completion_ids == greedy.completion_ids
    assert llm.generate(model, tok, prompts, n=2, temperature=1.0, seed=0, **kwargs).completion_ids \
        == sampled.completion_ids
    fp32_model, _ = llm.tiny_model(seed=0)
    cache = llm_kv_cache(fp32_model)
    fp32_model(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=cache, use_cache=True)
    assert {(layer.keys.dtype, layer.values.dtype) for layer in cache.layers} == {(torch.float32,) * 2}


llm_kv_cache = llm.kv_cache  # the real one, kept before the test above patches the module's name


# ----------------------------------------------------------------------------------------------------------
# Item 4: selective_log_softmax keeps ~2 B per logit for the backward in half precision
# ----------------------------------------------------------------------------------------------------------

def reference_selective_log_softmax(logits, index):
    """grpo.selective_log_softmax as it was at ffd84a8 (plain autograd): the reference for values and gradients."""
    picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1).float()
    lse = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
    return picked - lse


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selective_log_softmax_has_the_plain_gradient_exactly_in_fp32_and_within_bf16_rounding(temperature):
    """fp32: the values and gradient of plain autograd (ffd84a8's function), bit for bit. bf16 logits: the
    gradient is the exact one (fp32 math on the same bf16 logits) rounded once to bf16; plain autograd rounded
    its two parts separately (and divided by T in bf16), so it agrees only to bf16's precision."""
    torch.manual_seed(0)
    logits, index, weight = torch.randn(3, 5, 64) * 4, torch.randint(0, 64, (3, 5)), torch.randn(3, 5)

    def run(x, function):                       # -> (log-probs, d sum(weight * log-probs) / d x)
        x = x.detach().clone().requires_grad_(True)
        out = function(x)
        (out * weight).sum().backward()
        return out.detach(), x.grad

    plain = lambda x: reference_selective_log_softmax(x / temperature if temperature != 1.0 else x, index)
    ours = lambda x: grpo.selective_log_softmax(x, index, temperature)
    for a, b in zip(run(logits, ours), run(logits, plain)):
        assert torch.equal(a, b)                                            # fp32: exactly the plain function
    half = logits.bfloat16()
    logps, grad = run(half, ours)
    exact_logps, exact_grad = run(half.float(), plain)                      # fp32 math on the bf16 logits
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(logps, exact_logps, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad.float(), exact_grad, rtol=2 ** -8, atol=1e-7)     # one bf16 rounding
    torch.testing.assert_close(grad.float(), run(half, plain)[1].float(), rtol=0.05, atol=0.02)  # ffd84a8's


def test_autograd_keeps_2_bytes_per_logit_in_bf16_and_4_in_fp32():
    """Counted as bench/saved_bytes.py counts (tensors autograd saves whose last axis is the vocabulary): the bf16
    logits alone (2 B), where plain autograd also kept every row's fp32 copy (6 B). In fp32 the logits are fp32:
    4 B, as before (the claim is for half precision)."""
    saved_bytes = load_bench("saved_bytes")
    assert saved_bytes.main(precision="bf16") == pytest.approx(2.0)
    assert saved_bytes.main(precision="fp32") == pytest.approx(4.0)


# ----------------------------------------------------------------------------------------------------------
# Item 5: the temperature divides fp32 logits on the training side, as in generation
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("forward", [grpo.per_token_logps, grpo.shared_prefix_logps])
def test_temperature_divides_the_logits_after_the_fp32_upcast_under_bf16(bf16_tiny, forward):
    """Generation samples from softmax(fp32 logits / T) (HF's temperature warper divides fp32 scores); the
    training side must score the same: log_softmax(logits.float() / T), not of (bf16 logits / T) rounded to bf16
    (|log p - fp32| mean 0.028 vs 0.021, the issue's measurement). Checked against the model's own bf16 logits."""
    model, _ = bf16_tiny
    batch, T = random_batch(), 0.7
    outputs = []
    handle = model.register_forward_hook(lambda module, args, kwargs, out: outputs.append(out.logits), with_kwargs=True)
    try:
        with torch.no_grad():
            logps = forward(model, batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"], T)
    finally:
        handle.remove()
    assert all(o.dtype == torch.bfloat16 for o in outputs)
    targets = batch["input_ids"][:, -batch["logits_to_keep"]:]                 # [N, T]
    if len(outputs) == 1:                                                      # per_token_logps: one forward
        logits = outputs[0][:, :-1]                                            # [N, T, V]
    else:                                                                      # prompt forward, completion forward
        _, prompt_of_row = grpo.prompt_groups(batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
        logits = torch.cat([outputs[0][prompt_of_row], outputs[1]], 1)         # [N, T, V]
    expected = torch.log_softmax(logits.float() / T, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    in_bf16 = torch.log_softmax((logits / T).float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(logps[mask], expected[mask], rtol=0, atol=1e-5)
    assert (in_bf16 - expected)[mask].abs().max() > 1e-3                      # the old division is visibly off


# ----------------------------------------------------------------------------------------------------------
# Item 6: a gradient-scaler skip (fp16 overflow) is reported as a skip
# ----------------------------------------------------------------------------------------------------------

def test_an_fp16_overflow_is_a_skipped_update_with_no_grad_norm_not_a_nan(monkeypatch):
    """A loss scale of 2^40 overflows fp16 in the backward: the scaler skips the step and halves the scale. That
    is fp16 training working as designed; grpo_step reports skipped_updates = 1 and grad_norm None, train_step's
    metrics carry both, and gpu_check accepts the step. The next update (scale 2^39, ...) is no different."""
    model, _ = llm.tiny_model(seed=0, precision="fp16")
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch, advantages = random_batch(rows_per_prompt=2, prompts=(9,)), torch.tensor([1.0, -1.0])
    stats = grpo.grpo_step(model, optimizer, batch, advantages, scaler=scaler)
    assert stats["skipped_updates"] == 1 and stats["grad_norm"] is None
    assert scaler.get_scale() == 2.0 ** 39
    assert all(torch.equal(p, old) for p, old in zip(model.parameters(), before))   # the step was skipped
    fine = grpo.grpo_step(model, optimizer, batch, advantages, scaler=torch.amp.GradScaler("cpu", init_scale=1.0))
    assert fine["skipped_updates"] == 0 and fine["grad_norm"] > 0
    gpu_check = load_bench("gpu_check")
    metrics = {"loss": 0.1, "reward": 0.5, "grad_norm": None, "skipped_updates": 2}
    gpu_check.check_step(1, metrics)                                          # accepted: no SystemExit
    with pytest.raises(SystemExit, match=r"^gpu-check: FAILED: step 1 has a non-finite loss or grad_norm"):
        gpu_check.check_step(1, metrics | {"skipped_updates": 0})             # None without a skip: a failure
    with pytest.raises(SystemExit, match="non-finite"):
        gpu_check.check_step(1, metrics | {"grad_norm": float("nan"), "skipped_updates": 0})


def test_train_step_counts_skipped_updates_and_averages_grad_norm_over_the_updates_taken(monkeypatch):
    """ilr's metrics (section 6 of train_step): agent 0's update skipped by its scaler, agent 1's taken: grad_norm
    is agent 1's (not NaN, not a mean with a None), skipped_updates 1; every update skipped: grad_norm None."""
    from test_exercises import stub_agents

    cfg, _ = ilr.parse_args(["--preset", "tiny", "--questions_per_step", "2"])
    records = data.synthetic_problems(2, seed=0, levels=(1,))
    G = cfg.num_generations
    monkeypatch.setattr(ilr, "generate_groups", lambda cfg, agents, questions, modes, seed: (
        [ilr.Group("fusion", i, b, r, [[1]] * G, [[2]] * G, [f"\\boxed{{{r['answer']}}}"] + ["no"] * (G - 1))
         for i in range(len(agents)) for b, r in enumerate(questions)], [], {}))
    taken = {"kl": 0.0, "clip_ratio": 0.0, "frac_skipped": 0.0, "loss": 0.5, "grad_norm": 2.0, "skipped_updates": 0}
    for outcomes, grad_norm, skipped in [((None, 2.0), 2.0, 1), ((None, None), None, 2), ((3.0, 2.0), 2.5, 0)]:
        updates = iter(taken | {"grad_norm": g, "skipped_updates": int(g is None)} for g in outcomes)
        monkeypatch.setattr(grpo, "grpo_step", lambda *args, **kwargs: next(updates))
        metrics, _ = ilr.train_step(cfg, stub_agents(2), records, np.full(2, 0.5), [0.5, 0.5], step=0)
        assert (metrics["grad_norm"], metrics["skipped_updates"]) == (grad_norm, skipped)


# ----------------------------------------------------------------------------------------------------------
# Item 7: grpo_step reads the device once per step, not ~10 times per micro-batch
# ----------------------------------------------------------------------------------------------------------

class DeviceReads(TorchDispatchMode):
    """Counts, once `start()` is called, the host syncs grpo.py makes: a tensor read into Python (.item(),
    .tolist(), int(), float(), bool()) or an op whose output size depends on the data (nonzero, unique), made from
    a line of grpo.py. On a GPU each waits for the work queued so far. (On this CPU-only machine "before the first
    forward" stands in for "on the CPU copy": nothing is queued on a device before it.)"""
    SIZED_BY_DATA = {"nonzero", "unique_dim", "_unique2", "unique_consecutive", "masked_select"}

    def __init__(self, monkeypatch):
        super().__init__()
        self.on, self.reads = False, []
        for name in ("item", "tolist", "__int__", "__float__", "__bool__", "__index__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def read(tensor, *args, **kwargs):
            self._count(name, sys._getframe(1))
            return original(tensor, *args, **kwargs)
        return read

    def _count(self, name, frame):
        while frame is not None and ("/torch/" in frame.f_code.co_filename or frame.f_code.co_filename == __file__):
            frame = frame.f_back                                              # the first caller outside torch
        if self.on and frame is not None and frame.f_code.co_filename.endswith("grpo.py"):
            self.reads.append(f"{name} at grpo.py:{frame.f_lineno}")

    def start(self, *_):
        self.on = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.SIZED_BY_DATA:
            self._count(func.overloadpacket.__name__, sys._getframe(1))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("micro_batch_size", [1, 3])
def test_grpo_step_reads_the_device_once_per_step_whatever_the_micro_batches(tiny, monkeypatch, micro_batch_size):
    """Before: trim_padding's nonzero/int, prompt_groups' unique, grpo_loss's five .item() and the loss's, for
    every micro-batch, between its forward and the next (~10 each); the micro-batches' index work now runs on the
    CPU tensors before the first forward and the statistics are read once, with the gradient norm, at the end."""
    model, _ = tiny
    model = copy.deepcopy(model).train()
    counter = DeviceReads(monkeypatch)
    handle = model.register_forward_pre_hook(counter.start)
    with counter:
        stats = grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=0.0), random_batch(),
                               torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0]), micro_batch_size=micro_batch_size,
                               temperature=0.7)
    handle.remove()
    assert stats["num_tokens"] > 0 and stats["grad_norm"] > 0
    assert counter.reads == [counter.reads[0]] and counter.reads[0].startswith("tolist"), counter.reads


# ----------------------------------------------------------------------------------------------------------
# Item 8: transformers 5.23's name for gradient checkpointing
# ----------------------------------------------------------------------------------------------------------

def test_gradient_checkpointing_is_enabled_by_its_current_name_without_a_deprecation_warning():
    cfg, _ = ilr.parse_args(["--preset", "tiny", "--device", "cpu", "--num_agents", "1", "--method", "grpo",
                             "--gradient_checkpointing"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)                         # gradient_checkpointing_enable warns
        agent, = ilr.make_agents(cfg)
    assert grpo.uses_checkpointing(agent.model.train())
