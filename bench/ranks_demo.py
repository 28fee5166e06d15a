"""
bench/ranks_demo.py — the demo as 2 ranks x 1 thread (torchrun, one agent per process, gloo) against 1 process x 2
threads, on this machine (issue 23, item 3; docs/RESULTS.md "Two processes, one agent each (torchrun)").

    .venv/bin/python bench/ranks_demo.py --max_steps 4 --out runs/ranks-demo     # ~4.5 min on 2 idle cores

Both runs are the demo preset shortened by flags only (--max_steps, no base row, --eval_limit); the step time is
the median of metrics.jsonl's step_seconds (generation + update, whole step), the peak RSS of each process is the
largest VmHWM read from /proc while it runs (every 0.2 s), the wall time is the whole command's. Both runs train
the same questions with the same seeds: their metrics agree up to the float rounding of 1 vs 2 threads.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat's parent field)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, parent in parents.items() if parent == p]
    return out


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def is_python_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    launcher = any(part == b"torch.distributed.run" for part in cmd)                  # torchrun's own process
    return not launcher and any(part.endswith(b"ilr.py") for part in cmd)   # the ranks, or the single process


def run(command: list[str], env: dict) -> dict:
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        for pid in tree(proc.pid):
            if is_python_worker(pid) and (mb := peak_rss_mb(pid)) is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), mb)
        time.sleep(0.2)
    err = proc.stderr.read()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{err[-3000:]}")
    return {"wall_s": round(time.monotonic() - start, 1), "peak_rss_mb": sorted(round(v) for v in peaks.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_steps", type=int, default=4)
    parser.add_argument("--eval_limit", type=int, default=10)
    parser.add_argument("--out", default="runs/ranks-demo")
    args = parser.parse_args()
    out = ROOT / args.out
    flags = ["--preset", "demo", "--max_steps", str(args.max_steps), "--no-eval_base", "--eval_limit",
             str(args.eval_limit), "--save_steps", "100"]
    configs = {
        "1 process x 2 threads": ([sys.executable, "ilr.py"], "2"),
        "2 ranks x 1 thread": ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                "ilr.py"], "1"),
    }
    table = {}
    for name, (launcher, threads) in configs.items():
        folder = out / ("one" if name.startswith("1") else "two")
        if folder.exists():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        result = run(launcher + flags + ["--output_dir", str(folder)], env)
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        result["median_step_s"] = round(statistics.median(r["step_seconds"] for r in rows), 1)
        result["median_generation_s"] = round(statistics.median(r["generation_seconds"] for r in rows), 1)
        result["median_train_s"] = round(statistics.median(r["train_seconds"] for r in rows), 1)
        result["reward"] = [round(r["reward"], 4) for r in rows]
        table[name] = result
        print(name, json.dumps(result), flush=True)
    (out / "ranks_demo.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
