"""
bench/whatif.py — the fixes bench_grpo.py's profile points to, each measured alone against what the code does now.

    bench/.venv-trl/bin/python bench/whatif.py                 # both checks (~5 min on 2 quiet cores)
    bench/.venv-trl/bin/python bench/whatif.py --only adamw    # or: generate

 adamw     ilr.make_agents builds torch.optim.AdamW(params, lr, weight_decay=0.0): on CPU torch then runs the
           per-parameter ("for-loop") implementation (a dozen kernels per tensor, 272 tensors). TRL's default
           optim="adamw_torch_fused" runs one fused kernel. Timed: one step on SmolLM2-135M's parameters with the
           same random gradients, default vs foreach=True vs fused=True, interleaved; and the largest difference
           between the updated weights (fused is the same algorithm, so ~1e-9).
 generate  ilr.Config.batch_size = 16 sequences per generate batch, so 4 questions x G=8 run as 2 batches of
           16; TRL generates all 32 at once. Timed: llm.generate on the benchmark's 4 prompts, n=8, 64 tokens,
           batch_size 16 vs 32, interleaved.
Every figure is the median of interleaved repetitions (A B B A ...), 2 torch threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def interleaved(variants: dict, reps: int) -> dict:
    """Median seconds of each variant's callable, run in turns (order reversed every other round)."""
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": round(statistics.median(t), 3), "runs": [round(x, 3) for x in t]}
            for name, t in times.items()}


def check_adamw(model, reps: int) -> dict:
    import torch
    params = [p for p in model.parameters()]
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    copies, optimizers = {}, {}
    for name, kwargs in (("default (ours now)", {}), ("foreach=True", {"foreach": True}),
                         ("fused=True (TRL's default)", {"fused": True})):
        copies[name] = [p.detach().clone().requires_grad_(True) for p in params]
        for p, g in zip(copies[name], grads):
            p.grad = g.clone()
        optimizers[name] = torch.optim.AdamW(copies[name], lr=1e-6, weight_decay=0.0, **kwargs)
        optimizers[name].step()                                   # first step allocates the state: not timed
    result = interleaved({name: opt.step for name, opt in optimizers.items()}, reps)
    ref = copies["default (ours now)"]
    for name in copies:
        result[name]["max_abs_diff_vs_default"] = max(float((a.detach() - b.detach()).abs().max())
                                                      for a, b in zip(ref, copies[name]))
    return result


def check_generate(model, tokenizer, reps: int) -> dict:
    import data
    import evaluate
    import llm
    prompts = [evaluate.test_prompt(r) for r in data.synthetic_problems(4, seed=0, levels=(1, 2, 3, 4, 5))]
    tokens = {}

    def run(batch_size):
        def go():
            out = llm.generate(model, tokenizer, prompts, n=8, temperature=1.0, max_new_tokens=64,
                               batch_size=batch_size, seed=0)
            tokens.setdefault(batch_size, []).append(out.num_tokens)
        return go
    result = interleaved({"batch_size=16 (ilr.Config default)": run(16), "batch_size=32 (all B*G at once)": run(32)},
                         reps)
    for (name, r), bs in zip(result.items(), (16, 32)):
        r["completion_tokens"] = tokens[bs]
        r["tok_per_s"] = round(statistics.median(t / s for t, s in zip(tokens[bs], r["runs"])), 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="measure the fixes proposed from the profile")
    parser.add_argument("--only", choices=("adamw", "generate"))
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch
    import llm
    torch.set_num_threads(args.threads)
    model, tokenizer = llm.load_model()
    if args.only in (None, "adamw"):
        for name, r in check_adamw(model, args.reps + 2).items():
            print(f"AdamW step {name:<28} median {r['median_s']:.3f} s  runs {r['runs']}  "
                  f"max |w - w_default| {r['max_abs_diff_vs_default']:.1e}", flush=True)
    if args.only in (None, "generate"):
        for name, r in check_generate(model, tokenizer, args.reps).items():
            print(f"llm.generate {name:<34} median {r['median_s']:.1f} s  {r['tok_per_s']} tok/s  "
                  f"runs {r['runs']}  tokens {r['completion_tokens']}", flush=True)


if __name__ == "__main__":
    main()
