"""table1.py: which runs it plans, how it resumes, and the numbers of its table (hand-computed), then one real
run of the tiny model through the whole script."""
import json
import math

import pytest

import table1


def fake_run(out, row, seed, per_agent_levels, rewards, max_steps=4, base=(), config=None):
    """A finished run directory: config.json (max_steps and `config`), metrics.jsonl (the per-step mean reward),
    results.json and one evaluation file per agent, where per_agent_levels[i] = {level: (correct, total)}; `base`
    the same for the untrained agents' evaluation."""
    run = table1.run_dir(out, row, seed)
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"max_steps": max_steps} | (config or {})))
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
    for i, levels in enumerate(base):
        write(f"base-agent{i}", levels)
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
    fake_run(tmp_path, "ilr", 0, [{1: (2, 4)}, {1: (4, 4)}], [0.0, 0.1, 0.2, 0.4, 0.5, 0.6], base=[{1: (1, 4)}])
    fake_run(tmp_path, "ilr", 1, [{1: (1, 4)}, {1: (3, 4)}], [0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    fake_run(tmp_path, "grpo", 0, [{1: (0, 4)}], [0.3, 0.3, 0.3, 0.3, 0.3, 0.6])
    table = table1.report(tmp_path, ["grpo", "ilr"], [0, 1], [0]).splitlines()
    assert "| ilr s0 | 50.0 | 100.0 | - | - | - |" in table and "| grpo s0 | 0.0 | - | - | - | - |" in table
    assert table[2].startswith("| base (untrained) | - | 25.0 |")
    grpo, ilr = table[3].split(" | "), table[4].split(" | ")
    assert grpo[:3] == ["| grpo", "0", "0.0 ± -"]                          # one seed: no error bar
    assert grpo[-1] == "10.0 ± - |"                                       # rewards: last 3 (0.4) - first 3 (0.3)
    assert grpo[-4] == "-75.0 ± -"                                         # paired: 0 - 75 on seed 0 only
    se = math.sqrt(((75 - 62.5) ** 2 + (50 - 62.5) ** 2) / (2 - 1)) / math.sqrt(2)
    assert f"{se:.1f}" == "12.5"
    assert ilr[:3] == ["| ilr", "0,1", f"62.5 ± {se:.1f}"] and ilr[-5] == f"62.5 ± {se:.1f}"  # level 1 = all levels
    assert ilr[-4] == "-" and ilr[-3:-1] == ["-", "-"]     # no difference to itself; no coop/clip metrics logged
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
    assert [line.split(" | ")[:2] for line in table[2:5]] == [["| base (untrained)", "-"], ["| ilr", "0,1"],
                                                              ["| ilr-competition-only", "0"]]
    config = json.loads((out / "ilr-competition-only-s0" / "config.json").read_text())
    assert (config["interaction"], config["train_data"], config["seed"]) == ("competition", "ladder", 0)
    capsys.readouterr()
    assert table1.main(options).splitlines() == table                    # nothing to run again
    assert "[table1] start" not in capsys.readouterr().out



# --- issue 22: paired rows, the strong peer, the transcripts' interaction statistics, Figure 3 ---------------

def test_strong_peer_rows_train_the_strong_model_first_and_pair_it_with_the_base(tmp_path):
    todo = table1.plan(tmp_path, ["grpo", "ilr-strong-peer"], [0], [0, 1], "demo", ["--max_steps", "2"])
    strong = table1.strong_model(tmp_path)
    assert [run.name for run, _ in todo] == ["strong-s1000", "grpo-s0", "ilr-strong-peer-s0", "ilr-strong-peer-s1"]
    first = todo[0][1]
    assert first[first.index("--method") + 1] == "grpo" and first[first.index("--num_agents") + 1] == "1"
    assert first[-2:] == ["--max_steps", "2"]                               # options after -- win (tests: short)
    peer = todo[2][1]
    assert peer[peer.index("--models") + 1] == f"{strong},smollm2-135m"    # agent 0 strong, agent 1 the base
    # --models after -- names the base of every row; the strong-peer rows keep their pair (one --models only)
    peer = table1.plan(tmp_path, ["ilr-strong-peer"], [0], [0], "demo", ["--models", "tiny"])[1][1]
    assert peer.count("--models") == 1 and peer[peer.index("--models") + 1] == f"{strong},tiny"
    # once the strong run has finished it is not planned again
    strong.parent.parent.mkdir(parents=True)
    (strong.parent.parent / "results.json").write_text("{}")
    assert [run.name for run, _ in table1.plan(tmp_path, ["ilr-strong-peer"], [0], [0], "demo")] == [
        "ilr-strong-peer-s0"]


def test_run_all_starts_a_strong_peer_run_only_after_the_strong_run_and_prunes_only_the_others(tmp_path):
    import sys
    strong, peer, other = (tmp_path / "strong-s1000", tmp_path / "ilr-strong-peer-s0", tmp_path / "grpo-s0")

    def job(run, check="pass"):   # a fake ilr.py: weights, then results.json; `check` runs first
        return [sys.executable, "-c", f"import pathlib, time; {check}; r = pathlib.Path({str(run)!r}); "
                f"(r / 'final' / 'agent0').mkdir(parents=True); (r / 'checkpoint').mkdir(); time.sleep(1.5); "
                f"(r / 'results.json').write_text('{{}}')"]
    waits = f"assert (pathlib.Path({str(strong)!r}) / 'results.json').is_file(), 'started too early'"
    # two slots: the peer run (second) must wait while grpo (third) starts beside the strong run
    table1.run_all([(strong, job(strong)), (peer, job(peer, waits) + [f"# {table1.strong_model(tmp_path)}"]),
                    (other, job(other))], parallel=2, threads=1, keep=False)
    assert (peer / "results.json").is_file(), (tmp_path / "ilr-strong-peer-s0.log").read_text()
    assert (strong / "final" / "agent0").is_dir()                          # the strong model is kept
    assert not (peer / "final").exists() and not (peer / "checkpoint").exists() and not (other / "final").exists()


def graded_step_text(questions):
    """A real RUN/transcripts file (ilr.format_step_transcripts) from (question, mode, {stage: [M][G] correct})."""
    import ilr

    record = {"kind": "math", "meta": {}}
    transcripts = []
    for question, mode, stages in questions:
        t = {"question": question, "mode": mode, "agents": ["strong [model]", "weak, base"], "grades": {}}
        for stage, per_agent in stages.items():
            t[stage] = [[("7" if c else "3") for c in answers] for answers in per_agent]
            t["grades"][stage] = [[ilr.grade_line("7" if c else "3", record, float(c), float(c), 0.0, 0.0)
                                   for c in answers] for answers in per_agent]
        transcripts.append(t)
    return ilr.format_step_transcripts(1, transcripts)


def test_parse_transcript_reads_back_the_grades_ilr_writes():
    text = graded_step_text([("What is 3 + 4? Give only the number.", "competition",
                              {"sharing": [[True, False], [False, False]], "fusion": [[True, True], [False, True]]}),
                             ("What is 1 + 2?", "cooperation", {"answer": [[False], [True]]})])
    parsed = table1.parse_transcript(text)
    assert parsed == [{"question": "What is 3 + 4? Give only the number.", "mode": "competition",
                       "sharing": {0: [True, False], 1: [False, False]}, "fusion": {0: [True, True], 1: [False, True]}},
                      {"question": "What is 1 + 2?", "mode": "cooperation", "answer": {0: [False], 1: [True]}}]


def test_interaction_stats_counts_cooperation_per_level_and_fusion_repairs_against_resampling(tmp_path):
    import ilr

    cfg = ilr.Config(train_data="ladder", train_levels="1,2", num_train=8, seed=0)
    train = ilr.load_training_data(cfg)[0]
    one, two = [r for r in train if r["meta"]["level"] == 1], [r for r in train if r["meta"]["level"] == 2]
    run = tmp_path / "ilr-s0"
    (run / "transcripts").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_data": "ladder", "train_levels": "1,2", "num_train": 8,
                                                 "seed": 0}))
    # agent 1 (the second): answer 1 of Sharing wrong in questions A and C; A's Fusion 2 of 3 right, C's 0 of 3;
    # its other Sharing answers there: A 1 of 2, C 0 of 2 -> fusion 2/6 = 33.3 %, resampling 1/4 = 25 %
    step1 = graded_step_text([
        (one[0]["question"], "cooperation", {"sharing": [[True] * 3, [False, True, False]],
                                              "fusion": [[True] * 3, [True, True, False]]}),
        (two[0]["question"], "competition", {"sharing": [[False] * 3, [True, False, False]],   # answer 1 right
                                              "fusion": [[True] * 3, [False] * 3]})])
    step2 = graded_step_text([
        (two[1]["question"], "cooperation", {"sharing": [[True] * 3, [False, False, False]],
                                              "fusion": [[True] * 3, [False] * 3]}),
        (one[1]["question"], "competition", {"sharing": [[True] * 3, [True] * 3], "fusion": [[True] * 3] * 2})])
    (run / "transcripts" / "step00001.txt").write_text(step1)
    (run / "transcripts" / "step00002.txt").write_text(step2)
    stats = table1.interaction_stats(run, agent=1)
    assert stats["cooperation_by_level"] == {1: 50.0, 2: 50.0} and stats["questions_by_level"] == {1: 2, 2: 2}
    assert stats["sharing_wrong_questions"] == 2
    assert stats["fusion_fixes"] == pytest.approx(100 * 2 / 6) and stats["resample_fixes"] == 25.0
    assert table1.interaction_stats(run, agent=0)["sharing_wrong_questions"] == 1     # question B only
    (run / "results.json").write_text("{}")                               # finished: interaction_table reads it
    config = json.loads((run / "config.json").read_text()) | {"method": "ilr"}
    (run / "config.json").write_text(json.dumps(config))
    assert table1.interaction_table(tmp_path, ["ilr"], [0]).splitlines()[2] == (
        "| ilr | 0 | 50.0 ± - / 50.0 ± - | 2.0 ± - | 33.3 ± - | 25.0 ± - | 8.3 ± - |")


def test_strong_peer_table_pairs_the_weak_agent_by_seed(tmp_path):
    # weak agent (1): alone 40 / 50, with the strong peer 45 / 60 -> paired +5, +10 = 7.5 ± 2.5
    # strong agent (0): alone 80 / 80, with ILR 70 / 90 -> 0 ± 10; strong run alone: 75
    for seed, (alone, ilr_) in enumerate([((8, 4), (7, 4.5)), ((8, 5), (9, 6))]):
        fake_run(tmp_path, "grpo-strong-peer", seed, [{1: (int(alone[0] * 10), 100)}, {1: (int(alone[1] * 10), 100)}],
                 [0.5])
        fake_run(tmp_path, "ilr-strong-peer", seed, [{1: (int(ilr_[0] * 10), 100)}, {1: (int(ilr_[1] * 10), 100)}],
                 [0.5], base=[{1: (20, 100)}] if seed == 0 else ())
    fake_run(tmp_path, "strong", 1000, [{1: (75, 100)}], [0.5], max_steps=36)
    lines = table1.strong_peer_table(tmp_path, [0, 1]).splitlines()
    assert lines[2] == "| before training | - | 20.0 (untrained) | 75.0 (the strong run: 36 GRPO steps) |"
    assert lines[3] == "| grpo-strong-peer: each alone | 0,1 | 45.0 ± 5.0 | 80.0 ± 0.0 |"
    assert lines[4] == "| ilr-strong-peer: ILR | 0,1 | 52.5 ± 7.5 | 80.0 ± 10.0 |"
    assert lines[5] == "| ILR minus alone (paired) | 2 | 7.5 ± 2.5 | 0.0 ± 10.0 |"


def test_figure3_plots_the_fixed_ratios_and_the_dynamic_rule(tmp_path):
    assert table1.figure3(tmp_path, [0], [0]) is None                      # nothing finished: no plot
    for row in ("ilr-competition-only", "ilr-cooperation-only", "ilr", "grpo"):
        fake_run(tmp_path, row, 0, [{1: (1, 2)}], [0.5])
    assert table1.figure3(tmp_path, [0], [0]) == tmp_path / "figure3.png" and (tmp_path / "figure3.png").stat().st_size


def test_the_base_row_is_the_base_model_not_a_strong_peer_pairs_average(tmp_path):
    """A call of the strong-peer rows only: the first grpo-strong-peer run evaluated its untrained pair (the
    strong model 80 %, the base 20 %: mean 50); the strong run evaluated the base alone (20 %). The base row and
    the strong-peer table's "before training" must say 20.0 (they said 50.0, the pair's mean)."""
    fake_run(tmp_path, "grpo-strong-peer", 0, [{1: (5, 10)}, {1: (3, 10)}], [0.5], base=[{1: (8, 10)}, {1: (2, 10)}],
             config={"models": "runs/x/strong,smollm2-135m"})
    fake_run(tmp_path, table1.STRONG_ROW, table1.STRONG_SEED, [{1: (8, 10)}], [0.5], max_steps=36,
             base=[{1: (2, 10)}], config={"num_agents": 1})
    assert table1.base_accuracy(tmp_path) == pytest.approx(20.0)
    assert "| before training | - | 20.0 (untrained) | 80.0 (the strong run: 36 GRPO steps) |" in \
        table1.strong_peer_table(tmp_path, [0])


def test_the_curve_gives_each_agent_its_own_points_mean_and_se_over_seeds(tmp_path, monkeypatch):
    """Two seeds of a strong-peer row, the curve points given: agent 1 (the weak one) 20 and 30 % at step 0,
    30 and 40 % at step 6; agent 0 50 / 70 and 60 / 60. By hand: mean 25, SE 10/2 = 5.0, and so on."""
    import ilr
    points = {0: {0: {"agent0/ladder": 50.0, "agent1/ladder": 20.0}, 6: {"agent0/ladder": 60.0, "agent1/ladder": 30.0}},
              1: {0: {"agent0/ladder": 70.0, "agent1/ladder": 30.0}, 6: {"agent0/ladder": 60.0, "agent1/ladder": 40.0}}}
    for seed in (0, 1):
        table1.run_dir(tmp_path, "ilr-strong-peer", seed).mkdir(parents=True)
        (table1.run_dir(tmp_path, "ilr-strong-peer", seed) / "results.json").write_text("{}")
    monkeypatch.setattr(ilr, "read_curve", lambda run: points[int(run.name.rsplit("-s", 1)[1])])
    table, path = table1.curve(tmp_path, ["ilr-strong-peer"], [0, 1])
    assert table.splitlines()[2:] == [
        "| ilr-strong-peer | 1 | 0,1 | step 0: 25.0 ± 5.0 | step 6: 35.0 ± 5.0 |",
        "| ilr-strong-peer | 0 | 0,1 | step 0: 60.0 ± 10.0 | step 6: 60.0 ± 0.0 |"]
    assert path == tmp_path / "curve.png" and path.stat().st_size > 0
    assert table1.curve(tmp_path, ["grpo"], [0, 1]) == ("", None)          # no run with a curve: nothing


def test_the_strong_peer_rows_on_the_tiny_model(tmp_path):
    out = tmp_path / "t1"
    table = table1.main(["--rows", "grpo-strong-peer,ilr-strong-peer", "--seeds", "0", "--ablation_seeds", "0",
                         "--parallel", "2", "--out", str(out), "--preset", "tiny", "--prune", "--",
                         "--train_data", "ladder", "--val_data", "ladder", "--train_levels", "1,2",
                         "--difficulty", "level", "--eval_benchmarks", "ladder", "--max_steps", "1",
                         "--eval_steps", "1", "--eval_curve_limit", "2"])
    config = json.loads((out / "ilr-strong-peer-s0" / "config.json").read_text())
    assert config["models"] == f"{table1.strong_model(out)},tiny" and config["method"] == "ilr"
    assert (table1.strong_model(out) / "config.json").is_file()            # kept: the peer of later runs
    assert not (out / "ilr-strong-peer-s0" / "final").exists()              # pruned
    assert "| ilr-strong-peer: ILR | 0 |" in table and "| before training | - |" in table
    assert "| ilr-strong-peer | 0 |" in table                              # its transcripts' statistics
    curve_rows = [line for line in table.splitlines() if "step 0: " in line]   # the held-out curve (--eval_steps)
    assert [line.split(" | ")[:2] for line in curve_rows] == [["| grpo-strong-peer", "1"], ["| grpo-strong-peer", "0"],
                                                              ["| ilr-strong-peer", "1"], ["| ilr-strong-peer", "0"]]
    assert all(" | step 1: " in line for line in curve_rows) and (out / "curve.png").is_file()
