"""table1.py: which runs it plans, how it resumes, and the numbers of its table (hand-computed), then one real
run of the tiny model through the whole script."""
import json
import math

import pytest

import table1


def fake_run(out, row, seed, per_agent_levels, rewards, max_steps=4, base=None):
    """A finished run directory: config.json, metrics.jsonl (the per-step mean reward), results.json and one
    evaluation file per agent, where per_agent_levels[i] = {level: (correct, total)}."""
    run = table1.run_dir(out, row, seed)
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"max_steps": max_steps}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "reward": r, "accuracy": r}) + "\n"
                                               for i, r in enumerate(rewards)))
    (run / "results.json").write_text("{}")

    def write(tag, levels):
        lines = [json.dumps({"id": f"{level}-{k}", "level": level, "n": 1, "num_correct": int(k < correct),
                             "reason": "passed" if k < correct else "wrong"})
                 for level, (correct, total) in levels.items() for k in range(total)]
        (run / "eval" / f"{tag}-ladder.jsonl").write_text("\n".join(lines) + "\n")
    for i, levels in enumerate(per_agent_levels):
        write(f"step{max_steps}-agent{i}", levels)
    if base:
        write("base-agent0", base)
    return run


def test_plan_runs_main_rows_on_every_seed_ablations_on_theirs_and_evaluates_the_base_once(tmp_path):
    todo = table1.plan(tmp_path, ["grpo", "ilr", "ilr-no-calibration"], [0, 1], [5], "demo")
    assert [run.name for run, _ in todo] == ["grpo-s0", "grpo-s1", "ilr-s0", "ilr-s1", "ilr-no-calibration-s5"]
    assert [("--no-eval_base" in cmd) for _, cmd in todo] == [False, True, True, True, True]
    assert todo[4][1][todo[4][1].index("--seed") + 1] == "5" and "--no-calibration" in todo[4][1]


def test_plan_skips_finished_runs_and_resumes_unfinished_ones(tmp_path):
    fake_run(tmp_path, "grpo", 0, [{1: (1, 1)}], [0.5])                   # finished: results.json
    unfinished = table1.run_dir(tmp_path, "ilr", 0)
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_text("{}")                         # started, no results.json
    todo = table1.plan(tmp_path, ["grpo", "ilr"], [0], [0], "demo", ["--max_steps", "2"])
    assert [(run.name, cmd[2:]) for run, cmd in todo] == [("ilr-s0", ["--resume", str(unfinished)])]


def test_report_cells_are_mean_and_standard_error_over_seeds_of_the_agent_mean(tmp_path):
    # ilr seed 0: agents 50 % and 100 % at level 1 -> 75; seed 1: 25 and 75 -> 50. Mean 62.5; for two values the
    # standard error is |a - b| / 2 (sample std |a - b| / sqrt 2, over sqrt 2) = 12.5
    fake_run(tmp_path, "ilr", 0, [{1: (2, 4)}, {1: (4, 4)}], [0.0, 0.1, 0.2, 0.4, 0.5, 0.6], base={1: (1, 4)})
    fake_run(tmp_path, "ilr", 1, [{1: (1, 4)}, {1: (3, 4)}], [0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    fake_run(tmp_path, "grpo", 0, [{1: (0, 4)}], [0.3, 0.3, 0.3, 0.3, 0.3, 0.6])
    table = table1.report(tmp_path, ["grpo", "ilr"], [0, 1], [0]).splitlines()
    assert table[2].startswith("| base (untrained) | - | 25.0 |")
    grpo, ilr = table[3].split(" | "), table[4].split(" | ")
    assert grpo[:3] == ["| grpo", "1", "0.0 ± -"]                          # one seed: no error bar
    assert grpo[-1] == "10.0 ± - |"                                       # rewards: last 3 (0.4) - first 3 (0.3)
    se = math.sqrt(((75 - 62.5) ** 2 + (50 - 62.5) ** 2) / (2 - 1)) / math.sqrt(2)
    assert f"{se:.1f}" == "12.5"
    assert ilr[:3] == ["| ilr", "2", f"62.5 ± {se:.1f}"] and ilr[-2] == f"62.5 ± {se:.1f}"  # level 1 = all levels
    # reward rise: seed 0: (0.4 + 0.5 + 0.6) / 3 - (0 + 0.1 + 0.2) / 3 = 40 points; seed 1: 0 -> 20 ± 20
    assert ilr[-1] == "20.0 ± 20.0 |"
    assert (tmp_path / "table1.md").read_text().splitlines() == table and (tmp_path / "compare.png").is_file()


def test_bad_rows_and_seeds_are_one_line_errors(capsys):
    with pytest.raises(SystemExit):
        table1.main(["--rows", "ilr,ppo", "--report"])
    assert "--rows: unknown row 'ppo'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table1.main(["--seeds", "0,x", "--report"])
    assert "--seeds and --ablation_seeds must be comma-separated integers" in capsys.readouterr().err


def test_the_whole_script_on_the_tiny_model_then_a_rerun_reuses_its_runs(tmp_path, capsys):
    out = tmp_path / "t1"
    options = ["--rows", "ilr,ilr-competition-only", "--seeds", "0,1", "--parallel", "2", "--out", str(out),
               "--preset", "tiny", "--", "--train_data", "ladder", "--val_data", "ladder", "--train_levels", "1,2",
               "--difficulty", "level", "--eval_benchmarks", "ladder", "--max_steps", "1"]
    table = table1.main(options).splitlines()
    assert sorted(p.name for p in out.glob("*-s*") if p.is_dir()) == ["ilr-competition-only-s0", "ilr-s0", "ilr-s1"]
    assert [line.split(" | ")[:2] for line in table[2:]] == [["| base (untrained)", "-"], ["| ilr", "2"],
                                                             ["| ilr-competition-only", "1"]]
    config = json.loads((out / "ilr-competition-only-s0" / "config.json").read_text())
    assert (config["interaction"], config["train_data"], config["seed"]) == ("competition", "ladder", 0)
    capsys.readouterr()
    assert table1.main(options).splitlines() == table                    # nothing to run again
    assert "[table1] start" not in capsys.readouterr().out

