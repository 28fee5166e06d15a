"""bench/gpu_check.py — the first thing to run on a CUDA GPU (`make gpu-check` or `bench/gpu_check.sh`).

Two ILR steps of the embedded SmolLM2-135M pair (no Hub needed) with --bf16 on --device cuda: Idea3 generation and
the GRPO update of both agents, through ilr.train_step itself. It prints the device and precision, each step's
time, the peak GPU memory (torch.cuda.max_memory_allocated), and checks that the loss and gradient norm are
finite and that the weights moved. It exits non-zero with one line when something is wrong.

    bench/gpu_check.sh                                    # CUDA, bf16 (refused with one line on a T4: add --fp16)
    bench/gpu_check.sh --fp16                             # a GPU without bf16 (T4, RTX 20xx)
    bench/gpu_check.sh --preset tiny --device cpu         # the same checks on the CPU (tests/test_gpu_check.py)

Any ilr.py flag can follow (later flags win). Two departures from `--preset demo`, both to keep it short and
independent of the model's luck: `--interaction random` (no IRT pass over the validation set: the modes do not
depend on γ and D_q then), and, for an agent whose two steps had no reward signal (every group's rewards equal, so
grpo_step skipped every row and nothing could move), one extra update with advantages +1/-1 on 4 of its own
samples, so the "weights moved" check always tests the update path. With --fp16 the gradient scaler may skip an
update (an fp16 overflow: the scale halves; usual in the first steps): that step is reported as skipped, with no
grad_norm, and is no failure; the extra update is repeated, on the same samples, until the scaler takes it.
Pure bf16 weights (--torch_dtype bfloat16) at lr 1e-6 fail the check: that is the bug it is there to catch.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: the modules are at the root

import evaluate  # noqa: E402
import grpo  # noqa: E402
import ilr  # noqa: E402
import llm  # noqa: E402

DEFAULTS = ["--preset", "demo", "--device", "cuda", "--bf16", "--interaction", "random", "--max_steps", "2"]
MIN_MOVED = 0.5  # share of the weights that must change: ~100 % with fp32 masters, ~2 % with pure bf16 weights


def moved_share(model, before: list[torch.Tensor]) -> float:
    """Share of all weight elements that differ from `before` (a CPU copy)."""
    changed = sum(int((p.detach().cpu() != old).sum()) for p, old in zip(model.parameters(), before))
    return changed / sum(old.numel() for old in before)


def forced_update(cfg, agent, record: dict, max_tries: int = 30) -> dict:
    """One GRPO update on 4 of the agent's own samples with advantages +1/-1 (see the header); repeated while the
    fp16 gradient scaler skips it (each skip halves the scale: 30 tries reach 2^-30 of it)."""
    out = llm.generate(agent.model, agent.tokenizer, [evaluate.test_prompt(record)], n=4, temperature=1.0,
                       max_new_tokens=cfg.max_completion_length, seed=cfg.seed)
    batch = grpo.pack_batch(out.prompt_ids * 4, out.completion_ids[0], agent.tokenizer.pad_token_id)
    agent.model.train()
    for _ in range(max_tries):
        stats = grpo.grpo_step(agent.model, agent.optimizer, batch, torch.tensor([1.0, -1.0, 1.0, -1.0]),
                               micro_batch_size=cfg.micro_batch_size, max_grad_norm=cfg.max_grad_norm or None,
                               temperature=1.0, scaler=agent.scaler)
        if not stats["skipped_updates"]:
            break
    agent.model.eval()
    return stats


def check_step(step: int, metrics: dict) -> None:
    """Exit with one line unless the step's loss, reward and grad_norm are finite. A grad_norm of None is what an
    update skipped by the fp16 gradient scaler reports (skipped_updates > 0): accepted, as every agent's update
    skipped is accepted (the scale halves and the next step tries again)."""
    skipped_ok = metrics["grad_norm"] is None and metrics.get("skipped_updates", 0) > 0
    values = [metrics["loss"], metrics["reward"]] + ([] if skipped_ok else [metrics["grad_norm"]])
    if not all(v is not None and math.isfinite(v) for v in values):
        sys.exit(f"gpu-check: FAILED: step {step} has a non-finite loss or grad_norm "
                 f"(loss {metrics['loss']}, grad_norm {metrics['grad_norm']})")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, _ = ilr.parse_args(DEFAULTS + list(argv))
        ilr.check_config(cfg)
    except ilr.ConfigError as e:
        sys.exit(f"gpu-check: FAILED: {e}")
    device = llm.pick_device(cfg.device)
    cuda = device.type == "cuda"
    train, _ = ilr.load_training_data(cfg)
    agents = ilr.make_agents(cfg)                                        # prints the device and precision
    before = [[p.detach().cpu().clone() for p in a.model.parameters()] for a in agents]
    difficulty, abilities = np.full(len(train), 0.5), [0.5] * len(agents)  # unused by --interaction random
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    steps = []
    for step in range(cfg.max_steps):
        t0 = time.time()
        metrics, _ = ilr.train_step(cfg, agents, train, difficulty, abilities, step)
        if cuda:
            torch.cuda.synchronize(device)
        steps.append(metrics | {"wall_seconds": time.time() - t0})
        grad_norm = "-" if metrics["grad_norm"] is None else f"{metrics['grad_norm']:.4g}"
        skipped = metrics.get("skipped_updates", 0)
        print(f"[gpu-check] step {step + 1}: {steps[-1]['wall_seconds']:.1f} s (generation "
              f"{metrics['generation_seconds']:.1f} s, update {metrics['train_seconds']:.1f} s) | loss "
              f"{metrics['loss']:.4g} grad_norm {grad_norm} reward {metrics['reward']:.3f} "
              f"frac_skipped {metrics['frac_skipped']:.2f}" + (f" | {skipped} update(s) skipped by the fp16 "
                                                              f"gradient scaler (overflow; scale halved)"
                                                              if skipped else ""), flush=True)
        check_step(step + 1, metrics)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if cuda else None
    moved, forced = [], []
    for i, agent in enumerate(agents):
        share = moved_share(agent.model, before[i])
        if share == 0.0:                                                 # no reward signal in 2 steps: force one
            stats = forced_update(cfg, agent, train[0])
            if stats["grad_norm"] is None or not math.isfinite(stats["grad_norm"]):
                sys.exit(f"gpu-check: FAILED: agent{i}'s forced update has grad_norm {stats['grad_norm']}"
                         + (" (the fp16 gradient scaler skipped every try)" if stats["skipped_updates"] else ""))
            share, forced = moved_share(agent.model, before[i]), forced + [i]
        moved.append(share)
    print("[gpu-check] peak GPU memory: " + (f"{peak:.2f} GB (torch.cuda.max_memory_allocated)" if cuda else
                                              "n/a (not a CUDA device)"), flush=True)
    print("[gpu-check] weights moved: " + ", ".join(f"agent{i} {100 * s:.1f} %" + (" (forced update)" if i in forced
                                                    else "") for i, s in enumerate(moved)), flush=True)
    if min(moved) < MIN_MOVED:
        sys.exit(f"gpu-check: FAILED: only {100 * min(moved):.1f} % of an agent's weights changed after its update "
                 f"(expected ~100 %; pure half-precision weights round small updates away: use --bf16 or --fp16 "
                 f"with --torch_dtype float32)")
    print(f"[gpu-check] OK: {cfg.max_steps} steps on {llm.describe_runtime(device, agents[0].model.precision_ilr)}",
          flush=True)
    return {"steps": steps, "peak_gb": peak, "moved": moved, "forced": forced,
            "precision": agents[0].model.precision_ilr, "device": device.type}


if __name__ == "__main__":
    main()
