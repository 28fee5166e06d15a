"""ilr.py: configuration errors before loading, the step's pieces, learning on an easy reward, exact resume."""
import json

import pytest
import torch

import ilr

FAST = ["--preset", "tiny", "--no-eval_base"]


def run(tmp_path, *args, name="run"):
    return ilr.main(FAST + ["--output_dir", str(tmp_path / name)] + list(args))


# ---- bad configuration fails at start, in one line, before any model is loaded ----

@pytest.mark.parametrize("args,message", [
    (["--num_generations", "1"], "--num_generations must be >= 2"),
    (["--models", "no/such/dir/x.bin"], "unknown model 'no/such/dir/x.bin'"),
    (["--models", "tiny,tiny", "--num_agents", "3"], "--models names 2 models but --num_agents is 3"),
    (["--num_agents", "1"], "--method ilr needs --num_agents >= 2"),
    (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder: no such directory"),
    (["--train_data", "gsm9k"], "unknown benchmark 'gsm9k'"),
    (["--interaction", "sometimes"], "--interaction must be one of"),
    (["--train_stages", "analysis"], "--train_stages must be"),
    (["--difficulty", "guess"], "--difficulty must be one of self_rank, level"),
    (["--difficulty", "level", "--train_data", "gsm8k"], "--difficulty level needs training questions with a known"),
    (["--train_data", "ladder", "--train_levels", "1,6"], "--train_levels for the ladder must be among 1,2,3,4,5"),
])
def test_bad_configuration_fails_before_loading_a_model(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as e:
        run(tmp_path, *args)
    assert str(e.value).startswith("ilr.py: error: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_resume_of_a_folder_that_is_not_a_run_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no config.json there"):
        ilr.main(["--resume", str(tmp_path)])


# ---- pieces ----

def test_reward_is_correctness_plus_format_term():
    rec = {"kind": "math", "answer": "7", "meta": {}}
    assert ilr.answer_reward("so \\boxed{7}", rec, 0.1) == pytest.approx(1.1)
    assert ilr.answer_reward("so \\boxed{8}", rec, 0.1) == pytest.approx(0.1)
    assert ilr.answer_reward("7", rec, 0.1) in (0.0, 1.0)  # no box: no format credit, whatever the fallback
    assert ilr.answer_reward("so \\boxed{8}", rec, 0.0) == 0.0


def test_group_rewards_reuse_the_grades_and_equal_answer_reward():
    rec = {"kind": "math", "answer": "7", "meta": {}}
    texts = ["so \\boxed{7}", "so \\boxed{8}", "no idea", "\\boxed{7.0}"]
    groups = [ilr.Group("fusion", 0, 0, rec, [[1]] * 4, [[2]] * 4, texts)]
    correct = ilr.grade_groups(groups)
    assert correct.tolist() == [[1.0, 0.0, 0.0, 1.0]]
    expected = [[ilr.answer_reward(t, rec, 0.1) for t in texts]]
    torch.testing.assert_close(ilr.group_rewards(groups, 0.1, correct), torch.tensor(expected))
    torch.testing.assert_close(ilr.group_rewards(groups, 0.1), torch.tensor(expected))


def test_step_questions_cover_every_question_once_per_epoch():
    seen = [q for s in range(5) for q in ilr.step_questions(10, s, 2, seed=3)]  # 5 steps x 2 = one epoch
    assert sorted(seen) == list(range(10))
    assert ilr.step_questions(10, 7, 2, seed=3) == ilr.step_questions(10, 7, 2, seed=3)


def test_peer_sets_pair_the_agents_on_the_same_question_and_stage():
    g = lambda stage, agent, b: ilr.Group(stage, agent, b, {}, [], [], [])
    groups = [g("fusion", 0, 0), g("fusion", 0, 1), g("fusion", 1, 0), g("fusion", 1, 1),
              g("sharing", 0, 0), g("sharing", 1, 0)]
    assert ilr.peer_sets(groups) == [[0, 2], [1, 3], [4, 5]]


# ---- whole runs with the tiny model ----

REWARDED = 1000  # a token id: the reward is the share of completion tokens equal to it


def rewarded_token_share(groups, format_reward, correct=None):
    return torch.tensor([[sum(t == REWARDED for t in c) / max(len(c), 1) for c in g.completion_ids]
                         for g in groups])


def peaked_tiny_model(name, seed):
    """The tiny model, with 8 token embeddings (tied to the output) made larger, so that sampling puts ~20 %
    of its mass on those 8 tokens. A random model spreads its mass over all 49,152 tokens, where no single
    token is ever sampled and so no reward on one can be learned."""
    import llm
    model, tok = llm.tiny_model(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[REWARDED:REWARDED + 8] = torch.randn(8, emb.shape[1], generator=generator) * 0.5
    return model, tok


@pytest.mark.parametrize("method", ["grpo", "ilr"])
def test_a_seeded_run_learns_an_easy_reward(tmp_path, monkeypatch, method):
    monkeypatch.setattr(ilr, "group_rewards", rewarded_token_share)
    monkeypatch.setattr(ilr, "load_agent_model", peaked_tiny_model)
    run(tmp_path, "--method", method, "--max_steps", "8", "--learning_rate", "1e-3", "--num_generations", "8",
        "--max_completion_length", "8", "--eval_limit", "1", "--save_steps", "100", "--interaction", "random")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in rows]
    assert rewards[0] < 0.2 and min(rewards[-3:]) > 0.5, rewards
    # the baseline has no interaction: no cooperation share, rather than a misleading 0 ("all competition")
    assert all((r["ilr/cooperation_share"] is None) == (method == "grpo") for r in rows)
    assert "coop=-" in ilr.format_line(rows[0], 2) if method == "grpo" else "coop=-" not in ilr.format_line(rows[0], 2)


def weights(path):
    return torch.load(path, weights_only=False)["model"]


def test_resume_continues_exactly(tmp_path):
    args = ["--max_steps", "4", "--save_steps", "2", "--learning_rate", "1e-3", "--eval_limit", "1"]
    run(tmp_path, *args, name="straight")
    run(tmp_path, *args[:1], "2", *args[2:], name="split")                     # 2 steps ...
    ilr.main(["--resume", str(tmp_path / "split"), "--max_steps", "4"])         # ... + resume + 2 steps
    for i in (0, 1):
        a = weights(tmp_path / "straight" / "checkpoint" / f"agent{i}.pt")
        b = weights(tmp_path / "split" / "checkpoint" / f"agent{i}.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    split = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if "seconds" not in k and "per_second" not in k}
    assert [strip(x) for x in straight] == [strip(x) for x in split]
    assert weights(tmp_path / "straight" / "checkpoint" / "agent0.pt") is not None


def test_a_run_leaves_config_metrics_transcripts_plot_and_results(tmp_path):
    out = run(tmp_path, "--max_steps", "2")
    d = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "results.json", "results.md", "curves.png", "checkpoint/state.pt"):
        assert (d / name).is_file(), name
    assert len(list((d / "transcripts").iterdir())) == 2
    import llm
    model, _ = llm.load_model(str(d / "final" / "agent1"))  # the trained agent, ready for evaluate.py --model
    saved = torch.load(d / "checkpoint" / "agent1.pt", weights_only=False)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert set(out["trained"]) == {"agent0/synthetic", "agent1/synthetic"}
    with pytest.raises(SystemExit, match="holds a run already"):  # never overwrite a run by accident
        run(tmp_path, "--max_steps", "2")


def test_plot_of_several_runs_draws_one_comparison_and_names_a_missing_run(tmp_path):
    for name, reward in (("a", 0.1), ("b", 0.3)):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": reward * s, "accuracy": 0.0})
                                                 + "\n" for s in (1, 2)))
    (tmp_path / "a" / "results.json").write_text(json.dumps({"trained": {"agent0/synthetic": 12.0}}))
    out = ilr.main(["plot", str(tmp_path / "a"), str(tmp_path / "b")])
    assert out["plot"] == str(tmp_path / "compare.png") and (tmp_path / "compare.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="nothere/metrics.jsonl: no such file"):
        ilr.main(["plot", str(tmp_path / "a"), str(tmp_path / "nothere")])


def test_level_difficulty_on_the_ladder_splits_the_modes_and_logs_them_per_level(tmp_path, monkeypatch):
    import data
    import irt
    monkeypatch.setattr(irt, "estimate_ability", lambda *args, **kwargs: 0.3)  # gamma of both agents
    monkeypatch.setattr(irt, "estimate_difficulty", lambda *a, **k: pytest.fail("self-ranking was run"))
    run(tmp_path, "--train_data", "ladder", "--val_data", "ladder", "--train_levels", "1,2,3,4,5",
        "--difficulty", "level", "--num_train", "10", "--questions_per_step", "5", "--max_steps", "2",
        "--eval_benchmarks", "ladder", "--eval_limit", "1")
    saved = json.loads((tmp_path / "run" / "irt.json").read_text())
    train = data.ladder_problems(10, seed=1_000_003)                       # the training questions (seed 0)
    assert saved["difficulty"] == [(r["meta"]["level"] - 1) / 4 for r in train] and saved["abilities"] == [0.3, 0.3]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for step, row in enumerate(rows):
        batch = [train[q]["meta"]["level"] for q in ilr.step_questions(10, step, 5, seed=0)]  # B = 5 levels
        # gamma 0.3: levels 1-2 (D 0, 0.25) are easy -> compete; 3-5 -> cooperate; None = not in this batch
        expected = {k: (None if k not in batch else float(k >= 3)) for k in range(1, 6)}
        assert {k: row[f"ilr/cooperation_share/level{k}"] for k in range(1, 6)} == expected
        assert row["ilr/cooperation_share"] == pytest.approx(sum(k >= 3 for k in batch) / 5)
    assert {v for row in rows for k, v in row.items() if k.startswith("ilr/cooperation_share/")} >= {0.0, 1.0}
