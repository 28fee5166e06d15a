"""
bench/bench_grpo.py — our GRPO step vs TRL's GRPOTrainer, one ILR step, and evaluation speed, on this machine (issue 6).

    bash bench/run.sh                         # makes bench/.venv-trl (torch 2.13.0 CPU + trl), then runs this file
    bench/.venv-trl/bin/python bench/bench_grpo.py --steps 5 --ilr_steps 2 --eval_limit 16
    bench/.venv-trl/bin/python bench/bench_grpo.py --smoke    # 1 question, 8 tokens, 1 step each: checks the wiring
    bench/.venv-trl/bin/python bench/bench_grpo.py --report bench/results/<run>   # re-render a finished run's table

What it measures (README.md in this folder has the table and how to read it):
 1. The machine's fp32 matmul rate (torch.matmul of n x n matrices, best and median of several repetitions).
 2. For each workload:beta pair of --runs (default answer:0.04, answer:0, length:0; workloads in workers.py):
    ours (ilr.train_step, method "grpo", 1 agent: llm.generate -> rewards ->
    grpo.group_advantages -> grpo.pack_batch -> grpo.grpo_step) and TRL (GRPOTrainer, the equivalent GRPOConfig),
    each in its own process, stepped in turns (A B, then B A, ...): one warm-up step each, then `steps` measured.
    Per step: wall seconds, a phase split (bench/workers.py), generated tokens/s, training tokens/s, useful FLOPs
    and their share of the matmul rate; per process: peak RSS.
 3. One ILR step (2 agents, Idea3, Eq. 5; ilr.train_step with method "ilr"), stepped in turns with the beta = 0 pair,
    split into the three Idea3 stages (idea3's stats) and training.
 4. A profile (torch.profiler op table) of one extra step of ours and of TRL at beta = 0.04.
 5. Evaluation speed: `evaluate.py` on the first eval_limit GSM8K test problems, greedy, batch 16 vs batch 1,
    interleaved, eval_reps runs each.
Everything is written to bench/results/<date-time>/ (results.json, table.md, worker logs, profile tables).

Settings shared by both implementations (issue 6): SmolLM2-135M-Instruct fp32 on CPU (llm.load_model), the first
4 synthetic questions (data.synthetic_problems, seed 0) with evaluate.test_prompt as one user message, G = 8,
64 new tokens, temperature 1.0, learning rate 1e-6, one optimizer step per 32 completions, 8 rows per
forward/backward, clip 1.0, epsilon 0.2, loss_type "grpo", std-scaled advantages, reward = ilr.answer_reward.
Choices that are ours (stated in README.md): TRL keeps its own optimizer default (fused AdamW), gradient
checkpointing is off for both (ours' default; TRL's default is on), ours generates with ilr.Config's batch_size.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class BenchConfig:
    num_questions: int = field(default=4, metadata={"help": "B: synthetic questions per step"})
    num_generations: int = field(default=8, metadata={"help": "G: completions per question"})
    max_completion_length: int = field(default=64, metadata={"help": "T: new tokens per completion"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    runs: str = field(default="answer:0.04,answer:0,length:0", metadata={
        "help": "workload:beta pairs, one pair of processes (ours, TRL) each; workloads: answer (grader + format "
                "term: zero-advantage groups occur) or length (characters/100: every group trained)"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (both; with --use_peft give "
                                                                 "the adapters' own, e.g. 2e-4)"})
    use_peft: bool = field(default=False, metadata={"help": "both sides train a LoRA adapter on a frozen base: ours "
                                                            "ilr.Config(use_peft=True, lora_*), TRL GRPOTrainer("
                                                            "peft_config=peft.LoraConfig(same r, alpha, dropout, "
                                                            "targets)); the reference is the base, adapter disabled"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (both, --use_peft)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (both, --use_peft)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (both, --use_peft)"})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "LoRA target modules (both, "
                                                                             "--use_peft): all-linear or names"})
    micro_batch_size: int = field(default=8, metadata={"help": "rows per forward/backward (TRL: "
                                                                "per_device_train_batch_size)"})
    gen_batch_size: int = field(default=64, metadata={"help": "ours: sequences per generate batch (ilr.Config "
                                                              "batch_size's default; TRL generates all B*G at once)"})
    warmup_steps: int = field(default=1, metadata={"help": "unmeasured steps per process"})
    steps: int = field(default=5, metadata={"help": "measured steps per process (median reported)"})
    ilr_steps: int = field(default=2, metadata={"help": "measured ILR steps (0 = skip the ILR step)"})
    ilr_warmup_steps: int = field(default=1, metadata={"help": "unmeasured ILR steps before those"})
    profile: bool = field(default=True, metadata={"help": "one extra profiled step of ours and TRL (first beta)"})
    eval_limit: int = field(default=16, metadata={"help": "GSM8K test problems per evaluation run (0 = skip)"})
    eval_batch_sizes: str = field(default="16,1", metadata={"help": "evaluate.py --batch-size values compared"})
    eval_reps: int = field(default=2, metadata={"help": "runs per batch size, interleaved (median reported)"})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "evaluate.py --max-new-tokens"})
    data_dir: str = field(default=str(ROOT.parent / "shared" / "data"), metadata={"help": "benchmark data folder"})
    matmul_sizes: str = field(default="2048,4096", metadata={"help": "n of the n x n fp32 matmuls timed"})
    shape_tokens: str = field(default="256,512,2048", metadata={"help": "tokens per forward M at which the model's "
                                                                       "own matmul shapes are timed (shape_rate)"})
    matmul_reps: int = field(default=8, metadata={"help": "repetitions per matmul size"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads in every process"})
    seed: int = field(default=0, metadata={"help": "seed of both implementations"})
    wait_quiet_minutes: float = field(default=40, metadata={"help": "wait up to this long for a quiet machine "
                                                                    "(1-min load < quiet_load, no other "
                                                                    ".venv/bin/python); 0 = don't wait"})
    quiet_load: float = field(default=1.0, metadata={"help": "1-minute load average counted as quiet"})
    model: str = field(default="smollm2-135m", metadata={"help": "llm.load_model name (both implementations)"})
    out: str = field(default="", metadata={"help": "results folder (default bench/results/<date-time>)"})
    smoke: bool = field(default=False, metadata={"help": "tiny wiring check: 1 question, G=4, 8 tokens, 1 step"})


SMOKE = dict(num_questions=1, num_generations=4, max_completion_length=8, micro_batch_size=4, warmup_steps=0,
             steps=1, ilr_steps=1, eval_limit=2, eval_reps=1, eval_max_new_tokens=8, matmul_sizes="512",
             matmul_reps=2, wait_quiet_minutes=0, profile=True, shape_tokens="64")


# ----------------------------------------------------------------------------------------------------------
# 1) The machine: quiet check, description, matmul rate
# ----------------------------------------------------------------------------------------------------------

def other_pythons() -> list[str]:
    """Command lines of other projects' model processes (the repo venv's python), ours excluded."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    mine = {os.getpid(), os.getppid()}
    return [line.strip() for line in out if ".venv/bin/python" in line and int(line.split()[0]) not in mine]


def wait_until_quiet(minutes: float, quiet_load: float, log) -> dict:
    """Poll every 60 s until load1 < quiet_load and no other .venv/bin/python runs, at most `minutes`."""
    start = time.time()
    while True:
        load1 = os.getloadavg()[0]
        others = other_pythons()
        quiet = load1 < quiet_load and not others
        if quiet or time.time() - start >= minutes * 60:
            state = {"quiet": quiet, "load1": round(load1, 2), "other_pythons": len(others),
                     "waited_minutes": round((time.time() - start) / 60, 1)}
            log(f"[bench] machine {'quiet' if quiet else 'NOT quiet'}: {state}")
            return state
        log(f"[bench] waiting for a quiet machine: load1 {load1:.2f}, {len(others)} other python processes")
        time.sleep(60)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return {"nproc": os.cpu_count(), "cpu": cpu, "avx512": "avx512f" in flags, "amx": "amx_tile" in flags,
            "python": platform.python_version(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


def matmul_rate(sizes: list[int], reps: int, threads: int) -> dict:
    """fp32 GFLOP/s of torch.matmul(n x n, n x n) = 2 n^3 / seconds; best and median over reps, per size."""
    import torch
    torch.set_num_threads(threads)
    result = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)                                           # warm-up (allocations, thread pool)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - start)
        rates = [2 * n ** 3 / t / 1e9 for t in times]
        result[n] = {"best_gflops": round(max(rates), 1), "median_gflops": round(statistics.median(rates), 1)}
    result["peak_gflops"] = max(v["best_gflops"] for v in result.values())
    return result


def shape_rate(tokens: list[int], threads: int, reps: int = 3, hidden: int = 576, intermediate: int = 1536,
               kv: int = 192, vocab: int = 49152) -> dict:
    """fp32 GFLOP/s that the model's OWN matmul shapes reach (issue 15: the cap below the square-matmul rate).

    One training pass over M tokens through one SmolLM2-135M layer's linears (q, k, v, o: 576->576/192/192/576;
    gate, up: 576->1536; down: 1536->576) and the LM head (576->49152): the forward X W^T and the backward's two
    products dX = dY W and dW = dY^T X, i.e. 3 matmuls of 2 M n k FLOPs per linear, timed together; best of reps.
    M = the tokens of one micro-batch forward (e.g. 8 rows x 63 completion tokens on a shared prompt)."""
    import torch
    torch.set_num_threads(threads)
    shapes = [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden), (intermediate, hidden),
              (intermediate, hidden), (hidden, intermediate), (vocab, hidden)]               # (out n, in k)
    result = {}
    for M in tokens:
        mats = [(torch.randn(M, k), torch.randn(n, k), torch.randn(M, n)) for n, k in shapes]   # X, W, dY
        flops = sum(3 * 2 * M * n * k for n, k in shapes)
        best = float("inf")
        for _ in range(reps + 1):                                               # the first is a warm-up
            start = time.perf_counter()
            for x, w, dy in mats:
                x @ w.T, dy @ w, dy.T @ x                                           # forward, dX, dW
            best = min(best, time.perf_counter() - start)
        result[M] = round(flops / best / 1e9, 1)
    return result


# ----------------------------------------------------------------------------------------------------------
# 2) Workers: start, order steps in turns, collect
# ----------------------------------------------------------------------------------------------------------

class Worker:
    """A worker process (bench/workers.py) and its step reports."""

    def __init__(self, label: str, impl: str, settings: dict, out: Path):
        self.label, self.impl, self.reports, self.done = label, impl, [], None
        self.log = open(out / f"{label}.log", "w")
        cmd = [sys.executable, str(HERE / "workers.py"), impl, "--config", json.dumps(settings)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, cwd=ROOT)
        self.ready = self.read("READY")

    def read(self, kind: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@BENCH "):
                msg = json.loads(line[len("@@BENCH "):])
                if msg["kind"] != kind:
                    raise RuntimeError(f"{self.label}: expected {kind}, got {msg['kind']}")
                return msg
            self.log.write(line)
            self.log.flush()
        raise RuntimeError(f"{self.label} exited (code {self.proc.wait()}); see {self.log.name}")

    def order(self, what: str = "step") -> dict:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        report = self.read("STEP")
        report["order"] = what
        self.reports.append(report)
        return report

    def quit(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.done = self.read("DONE")
        self.proc.wait(timeout=120)
        self.log.close()
        return self.done

    def measured(self) -> list[dict]:
        return [r for r in self.reports if r.get("measured")]


def run_in_turns(workers: list[Worker], plan: dict[str, tuple[int, int]], log) -> None:
    """Round r orders one step from each worker that still has steps (warm-up first), in turns: the order of
    the workers is reversed every other round, so neither always runs right after the other."""
    rounds = max(w + m for w, m in plan.values())
    for r in range(rounds):
        order = workers if r % 2 == 0 else workers[::-1]
        for w in order:
            warm, measured = plan[w.label]
            if r < warm + measured:
                report = w.order("step")
                report["measured"] = r >= warm
                log(f"[bench] {w.label:>14} step {r + 1}/{warm + measured} "
                    f"{'(warm-up) ' if r < warm else ''}{report['wall']:.1f} s  " +
                    " ".join(f"{k}={v:.1f}" for k, v in report["seconds"].items()))


def worker_settings(cfg: BenchConfig, beta: float, out: Path, label: str, workload: str = "answer") -> dict:
    trl_steps = cfg.warmup_steps + cfg.steps + (1 if cfg.profile else 0) + 1
    return {"model": cfg.model, "num_questions": cfg.num_questions, "data_seed": cfg.seed, "levels": [1, 2, 3, 4, 5],
            "num_generations": cfg.num_generations, "max_completion_length": cfg.max_completion_length,
            "temperature": cfg.temperature, "beta": beta, "learning_rate": cfg.learning_rate, "seed": cfg.seed,
            "micro_batch_size": cfg.micro_batch_size, "gen_batch_size": cfg.gen_batch_size,
            "threads": cfg.threads, "profile_out": str(out / f"profile-{label}.txt"), "format_reward": 0.1,
            "trl_output_dir": str(out / "trl-output"), "trl_max_steps": trl_steps, "workload": workload,
            "use_peft": cfg.use_peft, "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout, "lora_target_modules": cfg.lora_target_modules}


def same_adapters(ours: dict | None, trl: dict | None) -> dict:
    """Stop unless ours' and TRL's adapters are the same: the same adapted modules ("all-linear" resolved by each
    side), the same number of LoRA tensors and elements, all trainable, and the same r / alpha / dropout.
    -> a summary for the table. (ours, trl: the `adapters` of each worker's READY, workers.adapter_signature.)

    >>> a = {"modules": ["model.layers.0.mlp.up_proj"], "lora_tensors": 2, "lora_params": 10, "trainable_params": 10,
    ...      "configs": {"agent0": {"r": 1, "alpha": 2, "dropout": 0.0}}}
    >>> same_adapters(a, a | {"configs": {"default": {"r": 1, "alpha": 2, "dropout": 0.0}}})["lora_params"]
    10
    >>> same_adapters(a, a | {"lora_params": 12})
    Traceback (most recent call last):
    SystemExit: [bench] adapters differ: lora_params: ours 10, TRL 12
    """
    if not ours or not trl:
        raise SystemExit(f"[bench] adapters missing on a side: ours {bool(ours)}, TRL {bool(trl)}")
    diffs = [f"{k}: ours {ours[k]}, TRL {trl[k]}" for k in ("lora_tensors", "lora_params", "trainable_params")
             if ours[k] != trl[k]]
    if ours["modules"] != trl["modules"]:
        only = sorted(set(ours["modules"]) ^ set(trl["modules"]))
        diffs.append(f"modules: ours {len(ours['modules'])}, TRL {len(trl['modules'])}, on one side only {only[:4]}")
    configs = [list(c.values()) for c in (ours["configs"], trl["configs"])]
    if configs[0] != configs[1]:
        diffs.append(f"r/alpha/dropout: ours {configs[0]}, TRL {configs[1]}")
    if ours["trainable_params"] != ours["lora_params"]:
        diffs.append(f"ours trains {ours['trainable_params']} of {ours['lora_params']} LoRA elements")
    if diffs:
        raise SystemExit("[bench] adapters differ: " + "; ".join(diffs))
    kinds = sorted({m.rsplit(".", 1)[-1] for m in ours["modules"]})
    return {"modules": len(ours["modules"]), "module_kinds": kinds, "lora_tensors": ours["lora_tensors"],
            "lora_params": ours["lora_params"], **configs[0][0]}


def same_optimizer(ours: Worker, trl: Worker) -> dict:
    """Stop unless both optimizers held the same number of elements at the same learning rate in every step."""
    seen = {w.label: {(r["optimizer"]["params"], r["optimizer"]["lr"]) for r in w.reports if r.get("optimizer")}
            for w in (ours, trl)}
    a, b = seen[ours.label], seen[trl.label]
    if len(a) != 1 or a != b:
        raise SystemExit(f"[bench] optimizers differ (elements, lr): ours {sorted(a)}, TRL {sorted(b)}")
    params, lr = next(iter(a))
    return {"params": params, "lr": lr}


# ----------------------------------------------------------------------------------------------------------
# 3) Summaries: medians, rates, FLOP share
# ----------------------------------------------------------------------------------------------------------

def med(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def summarize(w: Worker, peak_gflops: float) -> dict:
    rows = w.measured()
    c = lambda r, k: r["counts"].get(k, 0.0)                                          # noqa: E731
    flops = [c(r, "gen_flops") + c(r, "train_flops") + c(r, "nograd_flops") for r in rows]
    train_phase = [r["wall"] - r["seconds"]["generation"] - r["seconds"]["reward"] for r in rows]
    s = {"label": w.label, "steps": len(rows), "wall_s": med(r["wall"] for r in rows),
         "wall_all": [r["wall"] for r in rows],
         "phases_s": {p: med(r["seconds"][p] for r in rows) for p in rows[0]["seconds"]} if rows else {},
         "gen_tok_s": med(c(r, "gen_tokens") / max(r["seconds"]["generation"], 1e-9) for r in rows),
         "train_tok_s": med(c(r, "gen_tokens") / max(t, 1e-9) for r, t in zip(rows, train_phase)),
         "completion_tokens": med(c(r, "gen_tokens") for r in rows),
         "prompt_tokens": med(c(r, "gen_prompt_tokens") for r in rows),
         "trained_rows": med(c(r, "train_rows") for r in rows), "nograd_rows": med(c(r, "nograd_rows") for r in rows),
         "gen_rows": med(c(r, "gen_rows") for r in rows),
         "gen_padding": med(1 - c(r, "gen_prompt_tokens") / max(c(r, "gen_slots"), 1) -
                            c(r, "gen_tokens") / max(c(r, "gen_slots"), 1) for r in rows),
         "train_padding": med(1 - c(r, "train_real_tokens") / max(c(r, "train_slots"), 1) for r in rows
                              if c(r, "train_slots")),
         "gflop": med(f / 1e9 for f in flops),
         "gflops": med(f / 1e9 / r["wall"] for f, r in zip(flops, rows)),
         # the training phase alone (forwards with and without grad, backward, optimizer): its FLOPs over its time
         "train_gflops": med((c(r, "train_flops") + c(r, "nograd_flops")) / 1e9 / max(t, 1e-9)
                             for r, t in zip(rows, train_phase)),
         "gen_gflops": med(c(r, "gen_flops") / 1e9 / max(r["seconds"]["generation"], 1e-9) for r in rows),
         "reward_calls": med(r["calls"].get("reward", 0) for r in rows),
         "logps_calls": med(r["calls"].get("logps_grad", 0) for r in rows),
         "ref_calls": med(r["calls"].get("logps_nograd", 0) for r in rows),
         "peak_rss_mb": (w.done or {}).get("peak_rss_mb", max((r["peak_rss_mb"] for r in w.reports), default=0))}
    s["peak_share"] = s["gflops"] / peak_gflops if peak_gflops else float("nan")
    s["train_share"] = s["train_gflops"] / peak_gflops if peak_gflops else float("nan")
    s["gen_share"] = s["gen_gflops"] / peak_gflops if peak_gflops else float("nan")
    if w.impl != "trl":
        s["frac_skipped"] = med(r["ilr_metrics"].get("frac_skipped") for r in rows)
    if w.impl == "ilr":
        for stage in ("sharing", "analysis", "fusion"):
            s[f"{stage}_s"] = med(r["idea3"].get(f"idea3/{stage}_seconds") for r in rows)
            s[f"{stage}_tokens"] = med(r["idea3"].get(f"idea3/{stage}_tokens") for r in rows)
            s[f"{stage}_max_prompt"] = med(r["idea3"].get(f"idea3/{stage}_max_prompt_tokens") for r in rows)
    s["reports"] = [{k: v for k, v in r.items() if k != "profile_top"} for r in w.reports]  # warm-up included
    profiled = [r for r in w.reports if r.get("profile_top")]
    if profiled:
        s["profile_top"] = profiled[0]["profile_top"][:12]
        s["profile_wall_s"] = profiled[0]["wall"]
    return s


# ----------------------------------------------------------------------------------------------------------
# 4) Evaluation speed: evaluate.py's own command, batched vs one at a time, interleaved
# ----------------------------------------------------------------------------------------------------------

def eval_speed(cfg: BenchConfig, out: Path, log) -> list[dict]:
    runs = []
    sizes = [int(b) for b in cfg.eval_batch_sizes.split(",")]
    for rep in range(cfg.eval_reps):
        for bs in (sizes if rep % 2 == 0 else sizes[::-1]):
            folder = out / f"eval-b{bs}-r{rep}"
            cmd = [sys.executable, "evaluate.py", "--model", cfg.model, "--benchmarks", "gsm8k", "--data-dir",
                   cfg.data_dir, "--limit", str(cfg.eval_limit), "--max-new-tokens", str(cfg.eval_max_new_tokens),
                   "--batch-size", str(bs), "--threads", str(cfg.threads), "--out", str(folder)]
            start = time.perf_counter()
            with open(out / f"eval-b{bs}-r{rep}.log", "w") as f:
                subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
            s = json.loads((folder / "summary.json").read_text())["benchmarks"]["gsm8k"]
            runs.append({"batch_size": bs, "rep": rep, "seconds": s["seconds"], "items": s["new_items"],
                         "problems_per_minute": s["problems_per_minute"], "completion_tokens": s["completion_tokens"],
                         "pass@1": s["pass@1"], "process_seconds": round(time.perf_counter() - start, 1),
                         "command": " ".join(cmd[1:])})
            log(f"[bench] eval batch {bs} rep {rep}: {s['problems_per_minute']} problems/min "
                f"({s['seconds']} s, {s['completion_tokens']} tokens, pass@1 {s['pass@1']})")
    return runs


# ----------------------------------------------------------------------------------------------------------
# 5) The table
# ----------------------------------------------------------------------------------------------------------

def fmt(x, spec=".1f"):
    return "n/a" if x is None or x != x else format(x, spec)


def impl_name(s: dict, pair: dict) -> str:
    return s["label"].split("-")[0] + (" + LoRA" if pair.get("adapters") else "")


def adapter_lines(results: dict) -> list[str]:
    """One line per adapter pair: what both sides trained (checked equal by same_adapters / same_optimizer)."""
    out = []
    for tag, pair in results["grpo"].items():
        a, o = pair.get("adapters"), pair.get("optimizer") or {}
        if a:
            out.append(f"{tag}: the same LoRA on both sides: r {a['r']}, alpha {a['alpha']}, dropout {a['dropout']}, "
                       f"{a['modules']} modules ({', '.join(a['module_kinds'])}), {a['lora_tensors']} tensors, "
                       f"{a['lora_params']:,} parameters; both optimizers hold {o.get('params', 0):,} elements at "
                       f"lr {o.get('lr')}")
    return out


def grpo_table(results: dict) -> list[str]:
    lines = ["| implementation | workload | beta | s/step (median) | steps: s each | gen tok/s | train tok/s | "
             "GFLOP/step (useful) | GFLOP/s | % of matmul rate | peak RSS MB | trained rows / "
             f"{results['config']['num_questions'] * results['config']['num_generations']} | ref rows |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in results["grpo"].values():
        workload, beta = pair["workload"], pair["beta"]
        for s in (pair["ours"], pair["trl"]):
            lines.append(f"| {impl_name(s, pair)} | {workload} | {beta:g} | {fmt(s['wall_s'])} | "
                         f"{', '.join(fmt(w) for w in s['wall_all'])} | {fmt(s['gen_tok_s'])} | "
                         f"{fmt(s['train_tok_s'])} | {fmt(s['gflop'], '.0f')} | {fmt(s['gflops'])} | "
                         f"{fmt(100 * s['peak_share'])} | {fmt(s['peak_rss_mb'], '.0f')} | "
                         f"{fmt(s['trained_rows'], '.0f')} | {fmt(s['nograd_rows'], '.0f')} |")
        r = pair["ratio"]
        lines.append(f"| **TRL / ours** | {workload} | {beta:g} | **{fmt(r['wall'], '.2f')}x** | | "
                     f"{fmt(r['gen_tok_s'], '.2f')}x | {fmt(r['train_tok_s'], '.2f')}x | | | | "
                     f"{fmt(r['rss'], '.2f')}x | | |")
    return lines


def phase_table(results: dict) -> list[str]:
    lines = ["| implementation | workload | beta | generation | reward | logps (grad) | logps (no grad: ref) | "
             "backward | clip + optimizer | other | gen padding | train padding | grader calls | generation % of "
             "matmul rate | training % of matmul rate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in results["grpo"].values():
        for s in (pair["ours"], pair["trl"]):
            p = s["phases_s"]
            lines.append(f"| {impl_name(s, pair)} | {pair['workload']} | {pair['beta']:g} | " +
                         " | ".join(fmt(p.get(k)) for k in ("generation", "reward", "logps_grad", "logps_nograd",
                                                            "backward", "optimizer", "other")) +
                         f" | {fmt(100 * s['gen_padding'], '.0f')}% | {fmt(100 * s['train_padding'], '.0f')}% | "
                         f"{fmt(s['reward_calls'], '.0f')} | {fmt(100 * s['gen_share'])} | "
                         f"{fmt(100 * s['train_share'])} |")
    return lines


def ilr_table(results: dict) -> list[str]:
    s, base = results["ilr"], results["ilr_baseline"]
    lines = ["| step | s/step | sharing | analysis | fusion | generation total | training (logps+backward+optim) | "
             "other | completion tokens (all stages) | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in (("ours GRPO, 1 agent, beta 0", base), ("ILR, 2 agents, Idea3 + Eq. 5, beta 0", s)):
        p = x["phases_s"]
        train = sum(p.get(k, 0) for k in ("logps_grad", "logps_nograd", "backward", "optimizer"))
        lines.append(f"| {name} | {fmt(x['wall_s'])} | {fmt(x.get('sharing_s'))} | {fmt(x.get('analysis_s'))} | "
                     f"{fmt(x.get('fusion_s'))} | {fmt(p.get('generation'))} | {fmt(train)} | "
                     f"{fmt(p.get('other', 0) + p.get('reward', 0))} | {fmt(x['completion_tokens'], '.0f')} | "
                     f"{fmt(x['peak_rss_mb'], '.0f')} |")
    lines.append(f"| **ILR / GRPO** | **{fmt(s['wall_s'] / base['wall_s'], '.2f')}x** | | | | | | | | |")
    return lines


def eval_table(runs: list[dict]) -> list[str]:
    lines = ["| evaluate.py | problems | runs: problems/min | problems/min (median) | completion tok/s | pass@1 % |",
             "|---|---|---|---|---|---|"]
    for bs in sorted({r["batch_size"] for r in runs}, reverse=True):
        rs = [r for r in runs if r["batch_size"] == bs]
        tok_s = med(r["completion_tokens"] / r["seconds"] for r in rs)
        lines.append(f"| --batch-size {bs} | {rs[0]['items']} | {', '.join(fmt(r['problems_per_minute']) for r in rs)}"
                     f" | {fmt(med(r['problems_per_minute'] for r in rs))} | {fmt(tok_s)} | {rs[0]['pass@1']} |")
    return lines


def render(results: dict) -> str:
    m, mm = results["machine"], results["matmul"]
    head = [f"date {m['date']} | {m['nproc']} cores, {m['cpu']} (avx512 {m['avx512']}) | torch {results['torch']} | "
            f"trl {results.get('trl', 'n/a')} | transformers {results.get('transformers', 'n/a')} | "
            f"threads {results['config']['threads']}",
            f"load before: {results['quiet_before']} | load after: {results.get('load_after')}",
            "the model's own matmul shapes (forward + backward, by tokens per forward): " +
            ", ".join(f"M = {m}: {r} GFLOP/s" for m, r in results.get("shape_rate", {}).items()),
            "fp32 matmul rate: " + ", ".join(f"{n}^2 best {v['best_gflops']} / median {v['median_gflops']} GFLOP/s"
                                              for n, v in mm.items() if n != "peak_gflops"),
            "", f"GRPO step, {results['config']['num_questions']} questions x "
            f"G={results['config']['num_generations']}, {results['config']['max_completion_length']} new tokens "
            "(medians of interleaved measured steps):", ""]
    out = head + (adapter_lines(results) + [""] if adapter_lines(results) else []) + grpo_table(results)
    out += ["", "Where the time goes (median seconds per phase):", ""] + phase_table(results)
    if results.get("ilr"):
        out += ["", "ILR step vs our single-agent GRPO step (same 4 questions, G=8, 64 tokens):", ""]
        out += ilr_table(results)
    profiled = [(pair[k]["label"], pair[k]) for pair in results["grpo"].values() for k in ("ours", "trl")
                if pair[k].get("profile_top")]
    if profiled:
        out += ["", "torch.profiler, one extra step each (top ops by self CPU seconds; the profiler slows the step):",
                "", "| rank | " + " | ".join(f"{label} (step {fmt(s['profile_wall_s'])} s)" for label, s in profiled)
                + " |", "|---|" + "---|" * len(profiled)]
        for i in range(8):
            out.append(f"| {i + 1} | " + " | ".join(
                f"{s['profile_top'][i]['op']} {s['profile_top'][i]['self_s']:.1f} s ({s['profile_top'][i]['calls']})"
                if i < len(s["profile_top"]) else "" for _, s in profiled) + " |")
    if results.get("eval"):
        out += ["", f"Evaluation speed (GSM8K test, greedy, {results['config']['eval_max_new_tokens']} new tokens):",
                ""] + eval_table(results["eval"])
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------

class Saved:
    """A finished worker read back from results.json (summarize's input), for --report."""

    def __init__(self, summary: dict, impl: str):
        self.label, self.impl, self.reports = summary["label"], impl, summary["reports"]
        self.done = {"peak_rss_mb": summary["peak_rss_mb"]}
        self.profile = {k: summary[k] for k in ("profile_top", "profile_wall_s") if k in summary}

    def measured(self) -> list[dict]:
        return [r for r in self.reports if r.get("measured")]


def report(folder: Path) -> str:
    """Re-summarize and re-render a finished run's results.json (new columns need no new run)."""
    results = json.loads((folder / "results.json").read_text())
    peak = results["matmul"]["peak_gflops"]

    def redo(summary: dict, impl: str) -> dict:
        saved = Saved(summary, impl)
        return summarize(saved, peak) | saved.profile
    for pair in results["grpo"].values():
        pair["ours"], pair["trl"] = redo(pair["ours"], "ours"), redo(pair["trl"], "trl")
    if results.get("ilr"):
        results["ilr"], results["ilr_baseline"] = redo(results["ilr"], "ilr"), redo(results["ilr_baseline"], "ours")
    table = render(results)
    (folder / "table.md").write_text(table)
    return table


def parse_runs(text: str) -> list[tuple[str, float]]:
    """"answer:0.04,length:0" -> [("answer", 0.04), ("length", 0.0)]; one line on a bad entry."""
    runs = []
    for item in text.split(","):
        workload, _, beta = item.strip().partition(":")
        if workload not in ("answer", "length") or not beta:
            raise SystemExit(f"--runs: expected workload:beta with workload answer or length, got {item!r}")
        try:
            runs.append((workload, float(beta)))
        except ValueError:
            raise SystemExit(f"--runs: beta of {item!r} is not a number") from None
    return runs


def parse_args(argv) -> BenchConfig:
    parser = argparse.ArgumentParser(description="GRPO step: ours vs TRL; ILR step; evaluation speed (issue 6)")
    for f in dataclasses.fields(BenchConfig):
        if f.type in ("bool", bool):
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(f"--{f.name}", type=kind, default=f.default, help=f.metadata["help"])
    args = vars(parser.parse_args(argv))
    if args["smoke"]:
        args.update(SMOKE)
    return BenchConfig(**args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--report"]:                     # bench_grpo.py --report bench/results/<run>: re-render only
        print(report(Path(argv[1])))
        return None
    cfg = parse_args(argv)
    runs = parse_runs(cfg.runs)                      # a bad --runs stops here, before any measuring
    out = Path(cfg.out or HERE / "results" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    logfile = open(out / "bench.log", "a")

    def log(msg):
        print(msg, flush=True)
        logfile.write(msg + "\n")
        logfile.flush()

    log(f"[bench] results in {out}; config {dataclasses.asdict(cfg)}")
    results = {"config": dataclasses.asdict(cfg), "machine": machine(), "grpo": {}}
    results["quiet_before"] = wait_until_quiet(cfg.wait_quiet_minutes, cfg.quiet_load, log) \
        if cfg.wait_quiet_minutes > 0 else {"load1": round(os.getloadavg()[0], 2),
                                            "other_pythons": len(other_pythons())}
    results["matmul"] = matmul_rate([int(n) for n in cfg.matmul_sizes.split(",")], cfg.matmul_reps, cfg.threads)
    log(f"[bench] fp32 matmul rate {results['matmul']}")
    results["shape_rate"] = shape_rate([int(n) for n in cfg.shape_tokens.split(",")], cfg.threads)
    log(f"[bench] GFLOP/s of the model's own matmul shapes, by tokens per forward: {results['shape_rate']}")
    peak = results["matmul"]["peak_gflops"]
    ilr_done = False
    for index, (workload, beta) in enumerate(runs):
        tag = f"{workload}-b{beta:g}" + ("-lora" if cfg.use_peft else "")
        workers = [Worker(f"ours-{tag}", "ours", worker_settings(cfg, beta, out, f"ours-{tag}", workload), out),
                   Worker(f"trl-{tag}", "trl", worker_settings(cfg, beta, out, f"trl-{tag}", workload), out)]
        plan = {w.label: (cfg.warmup_steps, cfg.steps) for w in workers}
        ilr_worker = None
        if beta == 0 and workload == "answer" and cfg.ilr_steps > 0 and not ilr_done:
            # the ILR step runs in turns with the first answer, beta = 0 pair
            ilr_done = True
            ilr_worker = Worker(f"ilr-{tag}", "ilr", worker_settings(cfg, beta, out, f"ilr-{tag}"), out)
            workers.append(ilr_worker)
            plan[ilr_worker.label] = (cfg.ilr_warmup_steps, cfg.ilr_steps)
        for w in workers:
            results.setdefault("torch", w.ready.get("torch"))
            if w.impl == "trl":
                results.update(trl=w.ready["trl"], transformers=w.ready["transformers"])
            adapters_of = w.ready.get("adapters")         # the module list is long: its length in the log
            shown = w.ready | ({"adapters": adapters_of | {"modules": len(adapters_of["modules"])}}
                               if adapters_of else {})
            log(f"[bench] {w.label} ready: {shown}")
        if cfg.use_peft:                             # the same adapters on both sides, before any measuring
            adapters = same_adapters(workers[0].ready.get("adapters"), workers[1].ready.get("adapters"))
            log(f"[bench] the same adapters on both sides: {adapters}")
        run_in_turns(workers, plan, log)
        if cfg.profile and index == 0:
            for w in workers[:2]:
                w.order("profile")
                log(f"[bench] {w.label} profiled step written to {out}/profile-{w.label}.txt")
        for w in workers:
            w.quit()
        optimizer = same_optimizer(*workers[:2]) if cfg.use_peft else None
        if optimizer:
            log(f"[bench] the same optimizer on both sides (elements, lr): {optimizer}")
        ours, trl = (summarize(w, peak) for w in workers[:2])
        results["grpo"][tag] = {"workload": workload, "beta": beta, "ours": ours, "trl": trl,
                                "adapters": adapters if cfg.use_peft else None, "optimizer": optimizer, "ratio": {
            "wall": trl["wall_s"] / ours["wall_s"], "gen_tok_s": trl["gen_tok_s"] / ours["gen_tok_s"],
            "train_tok_s": trl["train_tok_s"] / ours["train_tok_s"], "rss": trl["peak_rss_mb"] / ours["peak_rss_mb"]}}
        if ilr_worker:
            results["ilr"], results["ilr_baseline"] = summarize(ilr_worker, peak), ours
        (out / "results.json").write_text(json.dumps(results, indent=1))
    if cfg.eval_limit > 0:
        results["eval"] = eval_speed(cfg, out, log)
    results["load_after"] = round(os.getloadavg()[0], 2)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    (out / "table.md").write_text(table)
    log("\n" + table)
    log(f"[bench] {out}/table.md, {out}/results.json, profiles {out}/profile-*.txt")
    return results


if __name__ == "__main__":
    main()
