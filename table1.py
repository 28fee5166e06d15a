"""
Table 1 at CPU scale: base vs GRPO vs ILR, and the paper's ablations, on the ladder, with error bars.

The paper's Table 1 compares each model alone after ILR with the same model after GRPO on six benchmarks; its
ablations (Figure 3, Table 3) switch off Perception Calibration and fix the interaction mode. This script runs
the same comparison where a 2-core CPU can: two SmolLM2-135M agents on the ladder (data.py), every run from
one preset (default `demo`, the settings of `make demo`), the same held-out questions for all, and several
seeds for the main rows.

    python table1.py                             # seeds 0,1,2 for base/GRPO/ILR, seed 0 for each other row
    python table1.py --seeds 0 --parallel 1      # one seed: a quick look
    python table1.py --report                    # only the tables and plots of the runs already finished
    python table1.py --rows grpo,ilr -- --max_steps 40     # some rows; options after -- go to every ilr.py run
    python table1.py --seeds 0,1,2,3,4 --ablation_seeds 0,1,2 --prune    # issue 22's protocol (docs/RESULTS.md)

Each run is `python ilr.py --preset demo --seed S ...` in OUT/<row>-s<S>; a finished run (results.json) is
reused, an unfinished one is resumed, so the script can be stopped and restarted. Runs go `--parallel` at a
time, each on `--threads` cores; `--prune` deletes a finished run's weights (4.2 GB with whole models).

Rows (ROWS): grpo, ilr, the ablations (no calibration; p = 1, 0, 0.5 fixed cooperation ratios, Figure 3;
self-ranked difficulty) and the strong-peer pair: agent 0 a stronger ladder model that the script trains first
with GRPO (OUT/strong-s1000, 36 steps, kept), agent 1 the untrained base, trained together (ilr-strong-peer) or
each alone (grpo-strong-peer). Seeds pair the rows: the same seed draws the same training questions at each step
and every run is evaluated on the same held-out questions.

What it writes: OUT/table1.md with (1) Table 1: per row the held-out accuracy (pass@1, greedy, each agent alone,
data.load_benchmark("ladder") test split: no question of it is trained on) averaged over the run's agents,
then mean ± standard error over the seeds (standard error = sample standard deviation / sqrt(seeds); "±  -" for
one seed), the paired difference to ilr (mean ± SE of the per-seed differences), the cooperation share, the
share of groups where Eq. 5's clip binds and the training reward's rise; (2) the strong-peer table (each agent
of the pair, paired by seed); (3) per ilr row, from the transcripts: the cooperation share per level and how
often agent 1's Fusion answers are right where its shared Sharing answer was wrong, against its other Sharing
answers there; (4) with --eval_steps, the held-out curves. Plots: OUT/compare.png (the reward curves of each
row's first seed, `ilr.py plot`), OUT/figure3.png (accuracy against the cooperation share: p = 0, 0.5, 1 and
the dynamic rule), OUT/curve.png (--eval_steps). The base row is the untrained model, which is the same for every
seed (greedy decoding, the same questions).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# row name -> the ilr.py options that make it (on top of the preset); "main" rows get every seed
ROWS = {
    "grpo": ["--method", "grpo"],
    "ilr": [],
    "ilr-no-calibration": ["--no-calibration"],
    "ilr-cooperation-only": ["--interaction", "cooperation"],                     # Figure 3's p = 1
    "ilr-competition-only": ["--interaction", "competition"],                     # Figure 3's p = 0
    "ilr-random-0.5": ["--interaction", "random", "--cooperation_ratio", "0.5"],  # Figure 3's p = 0.5
    "ilr-self-ranked": ["--difficulty", "self_rank"],
    # The paper's setting in miniature (issue 22): unequal agents. Agent 0 is a stronger ladder model that this
    # script trains first (the "strong" run below, made once and kept); agent 1 is the untrained base ({base}: the
    # preset's model, or the --models given after --), the SAME weak start as in the grpo row. The grpo row of
    # the same pair trains each alone: the control.
    "grpo-strong-peer": ["--method", "grpo", "--models", "{strong},{base}"],
    "ilr-strong-peer": ["--models", "{strong},{base}"],
}
MAIN_ROWS = ("grpo", "ilr")
FIGURE3 = {"ilr-competition-only": 0.0, "ilr-random-0.5": 0.5, "ilr-cooperation-only": 1.0}  # row -> p
# The strong peer: the base trained alone with GRPO three times as long as a row (36 steps), on its own seed's
# training questions (still the ladder's train split: no held-out question), then evaluated like every run.
STRONG_ROW, STRONG_SEED = "strong", 1000
STRONG_OPTIONS = ["--method", "grpo", "--num_agents", "1", "--max_steps", "36", "--no-eval_base"]
ILR = str(Path(__file__).with_name("ilr.py"))
LEVELS = (1, 2, 3, 4, 5)


def needs_strong(row: str) -> bool:
    """Whether a row pairs the strong peer (its options name {strong}).

    >>> needs_strong("ilr-strong-peer"), needs_strong("ilr"), needs_strong("strong")
    (True, False, False)
    """
    return "{strong}" in " ".join(ROWS.get(row, []))


def row_seeds(row: str, seeds: list[int], ablation_seeds: list[int]) -> list[int]:
    """The seeds of a row: every seed for the main rows (grpo, ilr), the ablation seeds for the others."""
    return seeds if row in MAIN_ROWS else ablation_seeds


def strong_model(out: Path) -> Path:
    """The strong peer's weights: the final model of the strong run."""
    return run_dir(out, STRONG_ROW, STRONG_SEED) / "final" / "agent0"


def base_model(preset: str, extra: list[str]) -> str:
    """The untrained model of the rows: the --models passed to every run (after --), else the preset's.

    >>> base_model("demo", []), base_model("demo", ["--models", "tiny"])
    ('smollm2-135m', 'tiny')
    """
    if "--models" in extra:
        return extra[extra.index("--models") + 1]
    import ilr

    return ilr.PRESETS[preset].get("models", ilr.Config.models)


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
    base_name = base_model(preset, extra)
    if needs_strong(row) and "--models" in extra:   # the row names the pair itself
        at = extra.index("--models")
        extra = extra[:at] + extra[at + 2:]
    options = STRONG_OPTIONS if row == STRONG_ROW else [
        o.replace("{strong}", str(strong_model(out))).replace("{base}", base_name) for o in ROWS[row]]
    return ([sys.executable, ILR, "--preset", preset, "--seed", str(seed), "--output_dir", str(run)]
            + options + ([] if base or row == STRONG_ROW else ["--no-eval_base"]) + extra)


def plan(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int], preset: str,
         extra: list[str] = ()) -> list[tuple[Path, list[str]]]:
    """(run directory, command) of every run still to do; the base row is evaluated once, by the first run.
    A strong-peer row first needs the strong run: it goes first (run_all starts those rows once it is done)."""
    todo = []
    if any(map(needs_strong, rows)) and not (
            run_dir(out, STRONG_ROW, STRONG_SEED) / "results.json").is_file():
        todo.append((run_dir(out, STRONG_ROW, STRONG_SEED),
                     command(out, STRONG_ROW, STRONG_SEED, preset, True, list(extra))))
    for row in rows:
        for seed in row_seeds(row, seeds, ablation_seeds):
            if not (run_dir(out, row, seed) / "results.json").is_file():
                base = (row, seed) == (rows[0], row_seeds(rows[0], seeds, ablation_seeds)[0])
                todo.append((run_dir(out, row, seed), command(out, row, seed, preset, base, list(extra))))
    return todo


def prune(run: Path) -> None:
    """Delete a finished run's weights (checkpoint/ and final/: 4.2 GB a run with two whole SmolLM2-135M agents);
    the table needs only its config, metrics, transcripts and eval/ files, which stay."""
    import shutil

    for name in ("checkpoint", "final"):
        shutil.rmtree(run / name, ignore_errors=True)


def run_all(todo: list[tuple[Path, list[str]]], parallel: int, threads: int, keep: bool = True) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    running: list[tuple[Path, subprocess.Popen, float]] = []
    strong = [run for run, _ in todo if run.name == f"{STRONG_ROW}-s{STRONG_SEED}"]

    def ready(run: Path, cmd: list[str]) -> bool:   # a strong-peer run waits for the strong run to finish
        return (not strong or run == strong[0] or not any(str(strong_model(strong[0].parent)) in c for c in cmd)
                or (strong[0] / "results.json").is_file())

    while todo or running:
        while len(running) < parallel and (item := next((t for t in todo if ready(*t)), None)):
            todo.remove(item)
            run, cmd = item
            run.parent.mkdir(parents=True, exist_ok=True)
            print(f"[table1] start {run.name}: {' '.join(cmd[1:])}", flush=True)
            log = open(run.parent / f"{run.name}.log", "a")
            running.append((run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time()))
        if todo and not running:   # nothing runs and nothing can start: the strong run failed
            sys.exit(f"table1.py: the strong run {strong[0]} did not finish (see {strong[0]}.log); "
                     f"{len(todo)} strong-peer runs not started")
        time.sleep(2)
        for item in list(running):
            run, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {run}.log)"
                if proc.returncode == 0 and not keep and (run / "results.json").is_file() and run not in strong:
                    prune(run)
                print(f"[table1] {run.name} {status} in {(time.time() - start) / 60:.1f} min", flush=True)


def level_accuracy(path: Path) -> dict:
    """Accuracy (%) per ladder level and overall of one evaluation file (RUN/eval/<tag>-agent<i>-ladder.jsonl),
    from evaluate.summarize (pass@1 and its per-level split, rounded to 0.01).

    >>> import json, tempfile; p = Path(tempfile.mkdtemp()) / "e.jsonl"
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


def final_tag(run: Path) -> str:
    """The evaluation tag of a run's trained agents: step<max_steps>."""
    import ilr

    return f"step{ilr.load_run_config(run).max_steps}"


def agent_accuracy(run: Path, agent: int, tag: str | None = None) -> float:
    """One agent's held-out accuracy (%, all levels) after training (or at `tag`, e.g. "base")."""
    return level_accuracy(run / "eval" / f"{tag or final_tag(run)}-agent{agent}-ladder.jsonl")["all"]


def metric_mean(run: Path, key: str) -> float:
    """The mean over training steps of one metrics.jsonl value (nan where a run does not log it, e.g. grpo's
    cooperation share)."""
    import ilr

    values = [m[key] for m in ilr.read_metrics(run) if m.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


def average(values: list[float], spec: str) -> str:
    """The mean of values formatted by spec, "-" if any is nan (a metric the runs do not log).

    >>> average([0.25, 0.5], ".2f"), average([float("nan")], ".2f")
    ('0.38', '-')
    """
    return "-" if any(math.isnan(v) for v in values) else format(sum(values) / len(values), spec)


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """The per-seed differences a - b over the seeds both have (the paired comparison).

    >>> paired({0: 50.0, 1: 40.0, 2: 30.0}, {0: 45.0, 1: 42.0})
    [5.0, -2.0]
    """
    return [a[s] - b[s] for s in sorted(a) if s in b]


TRANSCRIPT_QUESTION = re.compile(r"^==== (.*)\nmode: (\w+) \|", re.M)
TRANSCRIPT_STAGE = re.compile(r"^---- (1\. Idea Sharing|2\. Idea Analysis|3\. Idea Fusion|Answer \(alone\))$", re.M)
TRANSCRIPT_GRADE = re.compile(r"^\[agent (\d+): .*?(?:, answer (\d+)/\d+)?\] extracted .* \| (correct|wrong) \| "
                              r"reward \S+ \| calibrated \S+ \| advantage \S+$", re.M)
STAGE_KEYS = {"1. Idea Sharing": "sharing", "2. Idea Analysis": "analysis", "3. Idea Fusion": "fusion",
              "Answer (alone)": "answer"}


def parse_transcript(text: str) -> list[dict]:
    r"""The graded answers of one RUN/transcripts/stepNNNNN.txt (ilr.format_step_transcripts): per question its
    text, its mode and, per trained stage, {agent: [correct of answer 1, answer 2, ...]} (agents from 0).

    >>> t = ("legend\n\n==== What is 1 + 1?\nmode: cooperation | agents: a, b\n---- 1. Idea Sharing\n"
    ...      "[agent 1: a, answer 1/2] extracted '3' | wrong | reward 0.00 | calibrated 0.00 | advantage -1.00\n3\n"
    ...      "[agent 1: a, answer 2/2] extracted '2' | correct | reward 1.00 | calibrated 1.00 | advantage +1.00\n2\n"
    ...      "---- 3. Idea Fusion\n"
    ...      "[agent 2: b, answer 1/1] extracted '2' | correct | reward 1.00 | calibrated 1.00 | advantage +0.00\n2")
    >>> parse_transcript(t)
    [{'question': 'What is 1 + 1?', 'mode': 'cooperation', 'sharing': {0: [False, True]}, 'fusion': {1: [True]}}]
    """
    starts = list(TRANSCRIPT_QUESTION.finditer(text))
    out = []
    for k, q in enumerate(starts):
        block = text[q.start():starts[k + 1].start() if k + 1 < len(starts) else len(text)]
        entry = {"question": q.group(1).strip(), "mode": q.group(2)}
        stages = list(TRANSCRIPT_STAGE.finditer(block))
        for j, st in enumerate(stages):
            body = block[st.end():stages[j + 1].start() if j + 1 < len(stages) else len(block)]
            for g in TRANSCRIPT_GRADE.finditer(body):
                entry.setdefault(STAGE_KEYS[st.group(1)], {}).setdefault(int(g.group(1)) - 1, []).append(
                    g.group(3) == "correct")
        out.append(entry)
    return out


def interaction_stats(run: Path, agent: int) -> dict:
    """From an ilr run's transcripts: the cooperation share per ladder level (counted over the trained questions)
    and, for `agent`, how Fusion repairs a wrong Sharing answer: over the questions where the Sharing answer its
    peers read (answer 1) is wrong, the share of its Fusion answers that are right ("fusion_fixes") and, as the
    control, the share of its other Sharing answers (2..G, sampled alone from the same prompt) that are right
    ("resample_fixes"). Levels come from the run's own training questions (ilr.load_training_data)."""
    import ilr

    cfg = ilr.load_run_config(run)
    level_of = {r["question"].strip(): r["meta"].get("level") for r in ilr.load_training_data(cfg)[0]}
    modes: dict[int, list[int]] = {}
    fusion, resample, wrong_first = [], [], 0
    for path in sorted((run / "transcripts").glob("step*.txt")):
        for q in parse_transcript(path.read_text()):
            modes.setdefault(level_of[q["question"]], []).append(q["mode"] == "cooperation")
            sharing = q.get("sharing", {}).get(agent)
            if sharing and not sharing[0] and agent in q.get("fusion", {}):
                wrong_first += 1
                fusion += q["fusion"][agent]
                resample += sharing[1:]
    share = (lambda xs: 100.0 * sum(xs) / len(xs) if xs else float("nan"))
    return {"cooperation_by_level": {lvl: share(v) for lvl, v in sorted(modes.items())},
            "questions_by_level": {lvl: len(v) for lvl, v in sorted(modes.items())},
            "sharing_wrong_questions": wrong_first, "fusion_fixes": share(fusion), "resample_fixes": share(resample)}


def finished(out: Path, row: str, seeds: list[int]) -> dict[int, Path]:
    return {s: run_dir(out, row, s) for s in seeds if (run_dir(out, row, s) / "results.json").is_file()}


def base_evaluated(out: Path) -> list[Path]:
    """The runs that evaluated the untrained base model (the first run of a table1.py call). Not a strong-peer
    pair's: its "base" evaluation averages the strong model with the base (a call of strong-peer rows only)."""
    import ilr

    return [d for d in sorted(out.glob("*-s*")) if list((d / "eval").glob("base-agent*-ladder.jsonl"))
            and len(set(ilr.model_names(ilr.load_run_config(d)))) == 1]


def base_accuracy(out: Path) -> float | None:
    runs = base_evaluated(out)
    return run_accuracy(runs[0], "base")["all"] if runs else None


def main_table(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int]) -> str:
    """Table 1: per row the held-out accuracy per level (mean over the run's agents, then mean ± SE over seeds),
    the paired difference to ilr (all levels, over the seeds both have), the mean cooperation share, the mean
    share of groups where Eq. 5's clip binds, and the rise of the training reward."""
    import ilr

    columns = [*LEVELS, "all"]
    lines = ["| row | seeds | " + " | ".join(f"level {c}" if c != "all" else "all levels" for c in columns)
             + " | minus ilr (paired) | cooperation share | clip binds (share of groups)"
             + " | last-3 minus first-3 reward |",
             "|---|---|" + "---|" * (len(columns) + 4)]
    base_runs = base_evaluated(out)
    if base_runs:
        base = run_accuracy(base_runs[0], "base")
        lines.append("| base (untrained) | - | " + " | ".join(f"{base.get(c, float('nan')):.1f}" for c in columns)
                     + " | - | - | - | - |")
    ilr_all = {s: run_accuracy(r, final_tag(r))["all"] for s, r in finished(out, "ilr", seeds).items()}
    for row in rows:
        if needs_strong(row):
            continue                                  # the strong-peer rows have their own table
        runs = finished(out, row, row_seeds(row, seeds, ablation_seeds))
        if not runs:
            continue
        accs = {s: run_accuracy(r, final_tag(r)) for s, r in runs.items()}
        rises = []
        for r in runs.values():
            rewards = [m["reward"] for m in ilr.read_metrics(r)]
            rises.append(100.0 * (sum(rewards[-3:]) / 3 - sum(rewards[:3]) / 3))
        diffs = paired({s: a["all"] for s, a in accs.items()}, ilr_all)
        coop = [metric_mean(r, "ilr/cooperation_share") for r in runs.values()]
        clip = [metric_mean(r, "ilr/calibration_clip_share") for r in runs.values()]
        lines.append(f"| {row} | {','.join(map(str, runs))} | "
                     + " | ".join(cell([a.get(c, float('nan')) for a in accs.values()]) for c in columns)
                     + f" | {'-' if row == 'ilr' or not diffs else cell(diffs)}"
                     + f" | {average(coop, '.2f')} | {average(clip, '.3f')} | {cell(rises)} |")
    return "\n".join(lines)


def strong_peer_table(out: Path, seeds: list[int]) -> str:
    """The strong-peer comparison (issue 22, item 2): the same weak start (the base, agent 1) trained alone
    (grpo-strong-peer) or with the strong peer (ilr-strong-peer); the strong agent (0) before and after."""
    grpo, ilr_runs = finished(out, "grpo-strong-peer", seeds), finished(out, "ilr-strong-peer", seeds)
    strong = run_dir(out, STRONG_ROW, STRONG_SEED)
    if not (grpo or ilr_runs):
        return ""
    acc = {name: {a: {s: agent_accuracy(r, a) for s, r in runs.items()} for a in (0, 1)}
           for name, runs in (("grpo", grpo), ("ilr", ilr_runs))}
    lines = ["| pair (strong, weak) | seeds | weak agent (the base) | strong agent |", "|---|---|---|---|"]
    if (strong / "results.json").is_file():
        base = base_accuracy(out)
        lines.append(f"| before training | - | {'-' if base is None else f'{base:.1f}'} (untrained) "
                     f"| {agent_accuracy(strong, 0):.1f} (the strong run: {final_tag(strong)[4:]} GRPO steps) |")
    for name, runs in (("grpo", grpo), ("ilr", ilr_runs)):
        if runs:
            lines.append(f"| {name}-strong-peer: {'each alone' if name == 'grpo' else 'ILR'} | "
                         f"{','.join(map(str, runs))} | {cell(list(acc[name][1].values()))} | "
                         f"{cell(list(acc[name][0].values()))} |")
    if grpo and ilr_runs:
        lines.append(f"| ILR minus alone (paired) | {len(paired(acc['ilr'][1], acc['grpo'][1]))} | "
                     f"{cell(paired(acc['ilr'][1], acc['grpo'][1]))} | {cell(paired(acc['ilr'][0], acc['grpo'][0]))} |")
    return "\n".join(lines)


def interaction_table(out: Path, rows: list[str], seeds: list[int]) -> str:
    """Per ilr row: the cooperation share per level and how the weak agent's (agent 1) Fusion repairs a wrong
    Sharing answer against resampling (interaction_stats), mean ± SE over seeds."""
    import ilr

    lines = ["| row (agent 1) | seeds | cooperation share, level 1 / 2 / 3 / 4 (%) | questions with Sharing answer 1 "
             "wrong | Fusion answers right there (%) | other Sharing answers right there (%) | Fusion minus other "
             "Sharing (paired, points) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        runs = finished(out, row, seeds)
        runs = {s: r for s, r in runs.items() if list((r / "transcripts").glob("step*.txt"))
                and ilr.load_run_config(r).method == "ilr"}
        if not runs:
            continue
        stats = [interaction_stats(r, 1) for r in runs.values()]
        levels = sorted({lvl for st in stats for lvl in st["cooperation_by_level"]})
        coop = " / ".join(cell([st["cooperation_by_level"].get(lvl, float("nan")) for st in stats]) for lvl in levels)
        lines.append(f"| {row} | {','.join(map(str, runs))} | {coop} | "
                     f"{cell([st['sharing_wrong_questions'] for st in stats])} | "
                     f"{cell([st['fusion_fixes'] for st in stats])} | {cell([st['resample_fixes'] for st in stats])} | "
                     f"{cell([st['fusion_fixes'] - st['resample_fixes'] for st in stats])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def runs_table(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int]) -> str:
    """One line per finished run: each agent alone (%, all levels), the median step time, the mean share of groups
    with all rewards equal (no signal), the mean cooperation share."""
    import statistics

    import ilr

    lines = ["| run | agent 0 | agent 1 | median step (s) | groups with all rewards equal | cooperation share |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for seed, run in finished(out, row, row_seeds(row, seeds, ablation_seeds)).items():
            metrics = ilr.read_metrics(run)
            agents = sorted((run / "eval").glob(f"{final_tag(run)}-agent*-ladder.jsonl"))
            accs = [f"{agent_accuracy(run, i):.1f}" for i in range(len(agents))] + ["-"] * (2 - len(agents))
            seconds = [m["step_seconds"] for m in metrics if "step_seconds" in m]
            lines.append(f"| {row} s{seed} | {accs[0]} | {accs[1]} | "
                         f"{f'{statistics.median(seconds):.0f}' if seconds else '-'} | "
                         f"{average([metric_mean(run, 'frac_reward_zero_std')], '.2f')} | "
                         f"{average([metric_mean(run, 'ilr/cooperation_share')], '.2f')} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def save_plot(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Label, grid, legend and save one matplotlib figure (then close it)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figure3(out: Path, seeds: list[int], ablation_seeds: list[int]) -> Path | None:
    """Figure 3 at CPU scale: held-out accuracy (mean ± SE over seeds) against the measured cooperation share,
    for p = 0, 0.5, 1 (the fixed-ratio rows) and the dynamic rule (ilr); GRPO as a band. OUT/figure3.png."""
    points = []
    for row, seed_list in [*((r, ablation_seeds) for r in FIGURE3), ("ilr", seeds)]:
        runs = finished(out, row, seed_list)
        if runs:
            accs = [run_accuracy(r, final_tag(r))["all"] for r in runs.values()]
            coop = [metric_mean(r, "ilr/cooperation_share") for r in runs.values()]
            points.append((row, sum(coop) / len(coop), *mean_se(accs), len(runs)))
    if len(points) < 2:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    grpo = finished(out, "grpo", seeds)
    if grpo:
        mean, se = mean_se([run_accuracy(r, final_tag(r))["all"] for r in grpo.values()])
        se = 0.0 if math.isnan(se) else se
        ax.axhspan(mean - se, mean + se, color="gray", alpha=0.25, label=f"grpo ({len(grpo)} seeds), mean ± SE")
    for row, coop, mean, se, n in points:
        label = (f"p = {FIGURE3[row]:g}" if row in FIGURE3 else "dynamic (IRT)") + f", {n} seeds"
        ax.errorbar([coop], [mean], yerr=[0.0 if math.isnan(se) else se], fmt="s" if row == "ilr" else "o",
                    capsize=4, label=label)
    return save_plot(fig, ax, "cooperation share of the trained questions",
                     "held-out ladder accuracy (%), each agent alone", "Figure 3 at CPU scale: cooperation ratio",
                     out / "figure3.png")


ROLE = {0: " (strong)", 1: " (weak)"}                # the agents of a strong-peer row, in the curve's legend


def curve(out: Path, rows: list[str], seeds: list[int], agents: tuple[int, ...] = (1, 0)) -> tuple[str, Path | None]:
    """The held-out curves of the runs trained with --eval_steps (issue 22, item 5): each agent's accuracy (%, the
    fixed --eval_curve_limit subset) at each evaluated step, mean ± SE over seeds, per row and agent (agent 1, the
    weak one in the strong-peer rows, drawn solid; agent 0 dashed); a table and OUT/curve.png. ("", None) if no
    run has one."""
    import ilr

    curves = {}                                       # (row, agent) -> (seeds, steps, [[value per seed] per step])
    for row in rows:
        runs = {s: ilr.read_curve(r) for s, r in finished(out, row, seeds).items()}
        runs = {s: c for s, c in runs.items() if c}
        if not runs:
            continue
        steps = sorted(set.intersection(*(set(c) for c in runs.values())))
        for agent in agents:
            key = next((k for k in runs[min(runs)][steps[0]] if k.startswith(f"agent{agent}/")), None)
            if key is not None:
                curves[row, agent] = (list(runs), steps, [[c[st][key] for c in runs.values()] for st in steps])
    if not curves:
        return "", None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    color = {row: f"C{i}" for i, row in enumerate(dict.fromkeys(row for row, _ in curves))}
    lines = []
    for (row, agent), (row_seeds, steps, values) in curves.items():
        means = [mean_se(v) for v in values]
        ax.errorbar(steps, [m for m, _ in means], yerr=[0.0 if math.isnan(e) else e for _, e in means], capsize=3,
                    marker="o", color=color[row], ls="-" if agent == agents[0] else "--",
                    label=f"{row}, agent {agent}{ROLE.get(agent, '') if needs_strong(row) else ''} "
                          f"({len(row_seeds)} seeds)")
        lines.append(f"| {row} | {agent} | {','.join(map(str, row_seeds))} | " + " | ".join(
            f"step {st}: {cell(v)}" for st, v in zip(steps, values)) + " |")
    path = save_plot(fig, ax, "training step", "each agent alone, held-out accuracy (%)",
                     "Held-out accuracy during training (--eval_steps)", out / "curve.png")
    return "\n".join(["| row (held-out subset) | agent | seeds | accuracy (%) at each evaluated step |",
                      "|---|---|---|---|", *lines]), path


def report(out: Path, rows: list[str], seeds: list[int], ablation_seeds: list[int]) -> str:
    """The tables (markdown) of the finished runs, written to OUT/table1.md, OUT/compare.png (the reward curves
    of the first seed), OUT/figure3.png (where the cooperation-ratio rows have run) and OUT/curve.png (where
    runs were trained with --eval_steps)."""
    import ilr

    parts = [main_table(out, rows, seeds, ablation_seeds),
             strong_peer_table(out, ablation_seeds) if any(r.endswith("strong-peer") for r in rows) else "",
             interaction_table(out, [r for r in rows if r.startswith("ilr")], sorted({*seeds, *ablation_seeds})),
             curve(out, rows, sorted({*seeds, *ablation_seeds}))[0],
             runs_table(out, rows, seeds, ablation_seeds)]
    table = "\n\n".join(p for p in parts if p)
    (out / "table1.md").write_text(table + "\n")
    firsts = [run_dir(out, row, row_seeds(row, seeds, ablation_seeds)[0]) for row in rows]
    firsts = [r for r in firsts if (r / "results.json").is_file()]
    if firsts:
        ilr.compare_runs(firsts, out / "compare.png")
    figure3(out, seeds, ablation_seeds)
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
    parser.add_argument("--prune", action="store_true",
                        help="delete each finished run's checkpoint/ and final/ weights (4.2 GB a run), keep the rest")
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
        run_all(plan(out, rows, seeds, ablation_seeds, args.preset, extra), args.parallel, args.threads,
                keep=not args.prune)
        print(f"[table1] all runs finished in {(time.time() - start) / 60:.1f} min", flush=True)
    table = report(out, rows, seeds, ablation_seeds)
    print(table)
    return table


if __name__ == "__main__":
    main()
