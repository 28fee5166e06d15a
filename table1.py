"""
Table 1 at CPU scale: base vs GRPO vs ILR, and the paper's ablations, on the ladder, with error bars.

The paper's Table 1 compares each model alone after ILR with the same model after GRPO on six benchmarks; its
ablations (Figure 3, Table 3) switch off Perception Calibration and fix the interaction mode. This script runs
the same comparison where a 2-core CPU can: two SmolLM2-135M agents on the ladder (data.py), every run from
one preset (default `demo`, the settings of `make demo`), the same held-out questions for all, and several
seeds for the main rows.

    python table1.py                             # seeds 0,1,2 for base/GRPO/ILR, seed 0 for each ablation
    python table1.py --seeds 0 --parallel 1      # one seed: a quick look
    python table1.py --report                    # only the table and plot of the runs already finished
    python table1.py --rows grpo,ilr -- --max_steps 40     # some rows; options after -- go to every ilr.py run

Each run is `python ilr.py --preset demo --seed S ...` in OUT/<row>-s<S>; a finished run (results.json) is
reused, an unfinished one is resumed, so the script can be stopped and restarted. Runs go `--parallel` at a
time, each on `--threads` cores. It writes OUT/table1.md (the table) and OUT/compare.png (the reward curves of
seed 0, `ilr.py plot`).

What a cell means: the held-out accuracy (pass@1, greedy, each agent alone, data.load_benchmark("ladder")
test split: no question of it is trained on) averaged over the run's agents, then mean ± standard error over
the seeds (standard error = sample standard deviation / sqrt(seeds); "±  -" for one seed). The base row is the
untrained model, which is the same for every seed (greedy decoding, the same questions).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# row name -> the ilr.py options that make it (on top of the preset); "main" rows get every seed
ROWS = {
    "grpo": ["--method", "grpo"],
    "ilr": [],
    "ilr-no-calibration": ["--no-calibration"],
    "ilr-cooperation-only": ["--interaction", "cooperation"],
    "ilr-competition-only": ["--interaction", "competition"],
    "ilr-self-ranked": ["--difficulty", "self_rank"],
}
MAIN_ROWS = ("grpo", "ilr")
ILR = str(Path(__file__).with_name("ilr.py"))
LEVELS = (1, 2, 3, 4, 5)


def run_dir(out: Path, row: str, seed: int) -> Path:
    return out / f"{row}-s{seed}"


def command(out: Path, row: str, seed: int, preset: str, base: bool, extra: list[str]) -> list[str]:
    """The ilr.py command of one run: a fresh one, or --resume of an unfinished one (its saved config).

    >>> command(Path("t"), "grpo", 1, "demo", False, ["--max_steps", "3"])[2:]
    ['--preset', 'demo', '--seed', '1', '--output_dir', 't/grpo-s1', '--method', 'grpo', \
'--no-eval_base', '--max_steps', '3']
    """
    run = run_dir(out, row, seed)
    if (run / "config.json").is_file():
        return [sys.executable, ILR, "--resume", str(run)]
    return ([sys.executable, ILR, "--preset", preset, "--seed", str(seed), "--output_dir", str(run)]
            + ROWS[row] + ([] if base else ["--no-eval_base"]) + extra)


def plan(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int], preset: str,
         extra: list[str] = ()) -> list[tuple[Path, list[str]]]:
    """(run directory, command) of every run still to do; the base row is evaluated once, by the first run."""
    todo = []
    for row in rows:
        for seed in (seeds if row in MAIN_ROWS else ablation_seeds):
            if not (run_dir(out, row, seed) / "results.json").is_file():
                base = (row, seed) == (rows[0], seeds[0] if rows[0] in MAIN_ROWS else ablation_seeds[0])
                todo.append((run_dir(out, row, seed), command(out, row, seed, preset, base, list(extra))))
    return todo


def run_all(todo: list[tuple[Path, list[str]]], parallel: int, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    running: list[tuple[Path, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < parallel:
            run, cmd = todo.pop(0)
            run.parent.mkdir(parents=True, exist_ok=True)
            print(f"[table1] start {run.name}: {' '.join(cmd[1:])}", flush=True)
            log = open(run.parent / f"{run.name}.log", "a")
            running.append((run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time()))
        time.sleep(2)
        for item in list(running):
            run, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {run}.log)"
                print(f"[table1] {run.name} {status} in {(time.time() - start) / 60:.1f} min", flush=True)


def level_accuracy(path: Path) -> dict:
    """Accuracy (%) per ladder level and overall of one evaluation file (RUN/eval/<tag>-agent<i>-ladder.jsonl),
    from evaluate.summarize (pass@1 and its per-level split, rounded to 0.01).

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "e.jsonl"
    >>> rows = [{"id": str(i), "level": l, "n": 1, "num_correct": c, "reason": "passed" if c else "wrong"}
    ...         for i, (l, c) in enumerate([(1, 1), (1, 0), (2, 1)])]
    >>> _ = p.write_text("\\n".join(map(json.dumps, rows)))
    >>> level_accuracy(p)
    {1: 50.0, 2: 100.0, 'all': 66.67}
    """
    import evaluate

    summary = evaluate.summarize(evaluate.read_results(path), samples=1)
    return {**{int(k): v for k, v in summary["pass@1_by_level"].items()}, "all": summary["pass@1"]}


def run_accuracy(run: Path, tag: str) -> dict:
    """A run's per-level accuracy averaged over its agents (the files RUN/eval/<tag>-agent*-ladder.jsonl)."""
    files = sorted((run / "eval").glob(f"{tag}-agent*-ladder.jsonl"))
    per_agent = [level_accuracy(f) for f in files]
    return {k: sum(a[k] for a in per_agent) / len(per_agent) for k in per_agent[0]}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)); the error is nan for one value.

    >>> mean_se([10.0, 20.0, 30.0])
    (20.0, 5.773502691896258)
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def cell(values: list[float]) -> str:
    mean, se = mean_se(values)
    return f"{mean:.1f} ± {'-' if math.isnan(se) else f'{se:.1f}'}"


def report(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int]) -> str:
    """The table (markdown) of the finished runs, written to OUT/table1.md, and OUT/compare.png."""
    import ilr

    columns = [*LEVELS, "all"]
    lines = ["| row | seeds | " + " | ".join(f"level {c}" if c != "all" else "all levels" for c in columns)
             + " | last-3 minus first-3 reward |", "|---|---|" + "---|" * (len(columns) + 1)]
    base_runs = [d for d in sorted(out.glob("*-s*")) if list((d / "eval").glob("base-agent*-ladder.jsonl"))]
    if base_runs:
        base = run_accuracy(base_runs[0], "base")
        lines.append("| base (untrained) | - | " + " | ".join(f"{base.get(c, float('nan')):.1f}" for c in columns)
                     + " | - |")
    for row in rows:
        runs = [run_dir(out, row, s) for s in (seeds if row in MAIN_ROWS else ablation_seeds)]
        runs = [r for r in runs if (r / "results.json").is_file()]
        if not runs:
            continue
        accs = [run_accuracy(r, f"step{json.loads((r / 'config.json').read_text())['max_steps']}") for r in runs]
        rises = []
        for r in runs:
            rewards = [m["reward"] for m in ilr.read_metrics(r)]
            rises.append(100.0 * (sum(rewards[-3:]) / 3 - sum(rewards[:3]) / 3))
        lines.append(f"| {row} | {len(runs)} | " + " | ".join(cell([a.get(c, float('nan')) for a in accs])
                                                              for c in columns) + f" | {cell(rises)} |")
    table = "\n".join(lines)
    (out / "table1.md").write_text(table + "\n")
    finished = [run_dir(out, row, seeds[0]) for row in rows if (run_dir(out, row, seeds[0]) / "results.json").is_file()]
    if finished:
        ilr.compare_runs(finished, out / "compare.png")
    return table


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="seeds of base/GRPO/ILR (default 0,1,2)")
    parser.add_argument("--ablation_seeds", default=None, help="seeds of the ablations (default: the first seed)")
    parser.add_argument("--preset", default="demo", help="ilr.py preset of every run (default demo)")
    parser.add_argument("--out", default="runs/table1", help="folder of the runs, table1.md and compare.png")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to run (default all: {','.join(ROWS)})")
    parser.add_argument("--report", action="store_true", help="no runs: the table of the finished ones")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []   # options for every ilr.py run
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    rows = [r.strip() for r in args.rows.split(",")]
    if bad := [r for r in rows if r not in ROWS]:
        parser.error(f"--rows: unknown row {bad[0]!r}; choose from {', '.join(ROWS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        ablation_seeds = [int(s) for s in args.ablation_seeds.split(",")] if args.ablation_seeds else seeds[:1]
    except ValueError:
        parser.error(f"--seeds and --ablation_seeds must be comma-separated integers, got {args.seeds!r}")
    if args.parallel < 1 or args.threads < 1:
        parser.error("--parallel and --threads must be >= 1")
    out = Path(args.out)
    if not args.report:
        start = time.time()
        run_all(plan(out, rows, seeds, ablation_seeds, args.preset, extra), args.parallel, args.threads)
        print(f"[table1] all runs finished in {(time.time() - start) / 60:.1f} min", flush=True)
    table = report(out, rows, seeds, ablation_seeds)
    print(table)
    return table


if __name__ == "__main__":
    main()
