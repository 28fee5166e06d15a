"""ilr.py: configuration errors before loading, the step's pieces, learning on an easy reward, exact resume."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

import ilr

FAST = ["--preset", "tiny", "--no-eval_base"]


def run(tmp_path, *args, name="run"):
    return ilr.main(FAST + ["--output_dir", str(tmp_path / name)] + list(args))


# ---- bad configuration fails at start, in one line, before any model is loaded ----

# (argv, a fragment of the one-line message): at least one bad value for every field of ilr.Config
BAD_SETTINGS = [
    (["--device", "tpu"], "--device must be one of"),
    (["--device", "cpu", "--bf16", "--fp16"], "--bf16 and --fp16 exclude each other"),
    (["--torch_dtype", "float8"], "--torch_dtype must be one of"),
    (["--method", "ppo"], "--method must be 'ilr' or 'grpo'"),
    (["--models", "no/such/dir/x.bin"], "unknown model 'no/such/dir/x.bin'"),
    (["--models", "tiny,"], "without empty names"),
    (["--models", "tiny,tiny", "--num_agents", "3"], "--models names 2 models but --num_agents is 3"),
    (["--num_agents", "1"], "--method ilr needs --num_agents >= 2"),
    (["--num_agents", "0", "--method", "grpo"], "--num_agents must be in 1..99"),
    (["--num_agents", "100"], "--num_agents must be in 1..99"),
    (["--interaction", "sometimes"], "--interaction must be one of"),
    (["--cooperation_ratio", "1.5"], "--cooperation_ratio must be in [0, 1]"),
    (["--cooperation_ratio", "nan"], "--cooperation_ratio must be a finite number"),
    (["--train_stages", "analysis"], "--train_stages must be"),
    (["--train_stages", "fusion,fusion"], "--train_stages must be"),
    (["--format_reward", "-0.1"], "--format_reward must be >= 0"),
    (["--reward", "partial"], "--reward must be one of accuracy, digits"),
    (["--reward", "digits", "--train_data", "gsm8k"], "--reward digits is defined for integer answers (ladder, "
                                                      "synthetic), not --train_data gsm8k"),
    (["--train_data", "gsm9k"], "--train_data: unknown benchmark 'gsm9k'"),
    (["--train_data", "math500"], "--train_data math500 has no training split"),
    (["--train_data", "mbpp"], "pass --allow_test_training"),
    (["--train_levels", "abc"], "--train_levels must be comma-separated step counts"),
    (["--train_levels", "0"], "--train_levels must be comma-separated step counts"),
    (["--num_train", "-5"], "--num_train must be >= 0"),
    (["--val_data", "mathh"], "--val_data: unknown benchmark 'mathh'"),
    (["--num_val", "0"], "--num_val must be >= 1"),
    (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder: no such directory"),
    (["--irt_scale", "0"], "--irt_scale must be > 0"),
    (["--irt_threshold", "1"], "--irt_threshold must be in (0, 1)"),
    (["--rank_group_size", "0"], "--rank_group_size must be >= 2"),
    (["--rank_splits", "0"], "--rank_splits must be >= 1"),
    (["--max_steps", "0"], "--max_steps must be >= 1"),
    (["--questions_per_step", "0"], "--questions_per_step must be >= 1"),
    (["--num_generations", "1"], "--num_generations must be >= 2"),
    (["--learning_rate", "-1"], "--learning_rate must be > 0"),
    (["--learning_rate", "inf"], "--learning_rate must be a finite number"),
    (["--beta", "-0.1"], "--beta must be >= 0"),
    (["--epsilon", "-1"], "--epsilon must be in (0, 1)"),
    (["--epsilon_high", "0"], "--epsilon_high must be > 0"),
    (["--loss_type", "ppo"], "--loss_type must be 'grpo' or 'dapo'"),
    (["--scale_rewards", "group"], "--scale_rewards must be 'std' or 'none'"),
    (["--max_grad_norm", "-1"], "--max_grad_norm must be >= 0"),
    (["--ddp_timeout", "0"], "--ddp_timeout must be >= 1"),
    (["--micro_batch_size", "0"], "--micro_batch_size must be >= 1"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--max_completion_length", "0"], "--max_completion_length must be >= 1"),
    (["--peer_token_budget", "0"], "--peer_token_budget must be >= 1"),
    (["--eval_benchmarks", ""], "--eval_benchmarks: unknown benchmark ''"),
    (["--eval_benchmarks", "gsm8k,nope"], "--eval_benchmarks: unknown benchmark 'nope'"),
    (["--eval_limit", "-1"], "--eval_limit must be >= 0"),
    (["--eval_steps", "-2"], "--eval_steps must be >= 0 (0 = only after training)"),
    (["--eval_curve_limit", "0"], "--eval_curve_limit must be >= 1"),
    (["--eval_max_new_tokens", "0"], "--eval_max_new_tokens must be >= 1"),
    (["--output_dir", " "], "--output_dir must not be empty"),
    (["--save_steps", "0"], "--save_steps must be >= 1"),
    (["--log_transcript_steps", "0"], "--log_transcript_steps must be >= 1"),
    (["--batch_size", "0"], "--batch_size must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--lora_r", "0"], "--lora_r must be >= 1"),
    (["--lora_alpha", "0"], "--lora_alpha must be >= 1"),
    (["--lora_dropout", "1"], "--lora_dropout must be in [0, 1)"),
    (["--lora_target_modules", "q_proj,,v_proj"], "--lora_target_modules must be 'all-linear' or"),
    (["--load_in_4bit"], "--load_in_4bit needs --use_peft"),
    (["--optim", "sgd"], "--optim must be one of adamw_torch, adamw_8bit"),
    (["--difficulty", "guess"], "--difficulty must be one of self_rank, level"),
    (["--difficulty", "level", "--train_data", "gsm8k"], "--difficulty level needs training questions with a known"),
    (["--train_data", "ladder", "--train_levels", "1,6"], "--train_levels for the ladder must be among 1,2,3,4,5"),
    (["--report_to", "mlflow"], "--report_to must be 'none' or a comma list of tensorboard, wandb, trackio"),
    (["--report_to", "tensorboard,tensorboard"], "--report_to must be 'none' or a comma list"),
]
BOOLEAN_FIELDS = {"calibration", "gradient_checkpointing", "eval_base", "allow_test_training",
                  "use_bias_correction_kl", "skip_zero_advantage_kl_approx", "shared_prefix", "use_peft",
                  "load_in_4bit", "dry_run"}  # argparse: on|off


@pytest.mark.parametrize("args,message", BAD_SETTINGS)
def test_bad_configuration_fails_before_loading_a_model(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    argv = FAST + ["--output_dir", str(tmp_path / "run")] + args if "--output_dir" not in args else FAST + args
    with pytest.raises(SystemExit) as e:
        ilr.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("ilr.py: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()                      # nothing written


def test_every_config_field_has_a_bad_value_in_the_table():
    covered = {a[2:].replace("-", "_") for args, _ in BAD_SETTINGS for a in args if a.startswith("--")}
    missing = {f.name for f in ilr.fields(ilr.Config)} - covered - BOOLEAN_FIELDS
    assert not missing, f"add a rule to ilr.check_config and a row to BAD_SETTINGS for {sorted(missing)}"


def test_every_preset_passes_the_checks():
    for name in ilr.PRESETS:
        ilr.check_config(ilr.parse_args(["--preset", name])[0])


def test_demo_preset_trains_on_the_ladder_and_evaluates_on_at_least_100_held_out_questions():
    import data
    cfg, _ = ilr.parse_args(["--preset", "demo"])
    # the measured settings (docs/RESULTS.md, "Demo"); the base model has mixed groups at levels 1-2 only at T < 1
    assert (cfg.train_data, cfg.val_data, cfg.eval_benchmarks, cfg.difficulty) == ("ladder",) * 3 + ("level",)
    assert (cfg.temperature, cfg.num_generations, cfg.max_completion_length, cfg.learning_rate) == (0.7, 8, 32, 2e-5)
    assert cfg.eval_limit >= 100 and cfg.method == "ilr" and cfg.train_stages == "sharing,fusion"
    # held out: the evaluation questions never occur among the training questions the run can draw
    train, val = ilr.load_training_data(cfg)
    test = data.load_benchmark("ladder", limit=cfg.eval_limit)
    assert not {r["question"] for r in test} & {r["question"] for r in train + val}
    assert {r["meta"]["level"] for r in train} == {1, 2, 3, 4} and len(train) == cfg.num_train
    # with the known level as D_q and a middling gamma, IRT sends some levels to each mode
    difficulty = [(r["meta"]["level"] - 1) / 3 for r in train]
    modes = {ilr.irt.question_mode([ilr.irt.irt_probability(0.4, d)] * 2) for d in difficulty}
    assert modes == {"cooperation", "competition"}


def test_training_on_a_test_split_needs_the_named_setting():
    cfg, _ = ilr.parse_args(["--train_data", "math500", "--allow_test_training"])
    ilr.check_config(cfg)                                        # allowed when asked for by name
    ilr.check_config(ilr.parse_args(["--train_data", "gsm8k"])[0])  # gsm8k's train split: fine


def test_model_and_data_errors_are_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    import data
    import llm
    for error in (llm.ModelError("cannot load 'x/y' from the Hugging Face Hub"), data.DataError("f.jsonl:3: bad")):
        def fail(cfg, error=error):
            raise error
        monkeypatch.setattr(ilr, "make_agents", fail)
        with pytest.raises(SystemExit) as e:
            run(tmp_path, name=type(error).__name__)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err == f"ilr.py: error: {error}\n"


def test_resume_of_a_folder_that_is_not_a_run_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ilr.main(["--resume", str(tmp_path)])
    assert "no config.json there" in capsys.readouterr().err


def test_a_runs_saved_config_is_read_back_or_refused_in_one_line(tmp_path):
    """ilr.load_run_config (what --resume, read_curve and table1 read a run with): the Config it was saved from;
    a config.json from another version or not a JSON object of settings is one line naming the folder."""
    cfg = ilr.Config(max_steps=7, seed=3, models="a/b,c/d")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    assert ilr.load_run_config(tmp_path) == cfg
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg) | {"warp_drive": 1}))
    with pytest.raises(ilr.ConfigError, match=r"config.json has settings this ilr.py does not know \(warp_drive\)"):
        ilr.load_run_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ilr.ConfigError, match="config.json is not a JSON object of settings"):
        ilr.load_run_config(tmp_path)
    with pytest.raises(ilr.ConfigError, match="no config.json there"):
        ilr.load_run_config(tmp_path / "elsewhere")


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


def rewarded_token_share(groups, format_reward, correct=None, reward="accuracy"):
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


def mixed_rewards(groups, format_reward, correct=None, reward="accuracy"):
    """A deterministic reward that differs within every group of the random tiny model's answers (their token
    ids spread over the whole vocabulary): the mean of (id mod 97) / 96. Every group then has a non-zero
    advantage, so every step really updates the weights."""
    return torch.tensor([[sum(t % 97 for t in c) / 96 / max(len(c), 1) for c in g.completion_ids] for g in groups])


SMALL = ["--max_completion_length", "6", "--num_generations", "4", "--questions_per_step", "1",
         "--learning_rate", "1e-3", "--eval_limit", "1", "--eval_max_new_tokens", "2", "--interaction", "random"]


def metric_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_times(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_second" not in k} for r in rows]


def test_resume_continues_exactly(tmp_path, monkeypatch):
    """A run of 3 steps equals 2 steps + --resume + 1 step, weights and metrics, with real updates on every step
    (a load_checkpoint that restored nothing, or only the weights, would differ)."""
    monkeypatch.setattr(ilr, "group_rewards", mixed_rewards)
    # --no-shared_prefix: bit-exact comparison. With the shared-prefix forward the resumed weights differ from the
    # straight run's by ~1e-7 (float summation order in the backward of the cache's batch index), not by logic.
    args = SMALL + ["--no-shared_prefix", "--max_steps", "3", "--save_steps", "2"]
    run(tmp_path, *args, name="straight")
    run(tmp_path, *args[:-4], "--max_steps", "2", "--save_steps", "2", name="split")      # 2 steps ...
    ilr.main(["--resume", str(tmp_path / "split"), "--max_steps", "3"])                   # ... + resume + 1 step
    straight, split = metric_rows(tmp_path / "straight"), metric_rows(tmp_path / "split")
    assert all(r["grad_norm"] > 0 and r["frac_reward_zero_std"] == 0 for r in straight)   # every step updates
    assert without_times(straight) == without_times(split)
    import llm
    initial = llm.tiny_model(seed=0)[0].state_dict()
    for i in (0, 1):
        a = weights(tmp_path / "straight" / "checkpoint" / f"agent{i}.pt")
        b = weights(tmp_path / "split" / "checkpoint" / f"agent{i}.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], initial[k]) for k in a)                          # the weights moved


def test_eval_steps_draws_the_held_out_curve_and_leaves_the_training_as_it_was(tmp_path, monkeypatch):
    """--eval_steps 2: each agent alone on the first --eval_curve_limit questions before training and after steps
    2 and 4 (eval/<benchmark>/agent<i> in those rows of metrics.jsonl, read_curve, the plot); the training's
    metrics and weights are those of the same run without it, bit for bit."""
    monkeypatch.setattr(ilr, "group_rewards", mixed_rewards)
    args = SMALL + ["--no-shared_prefix", "--max_steps", "4", "--save_steps", "4"]
    run(tmp_path, *args, name="plain")
    run(tmp_path, *args, "--eval_steps", "2", "--eval_curve_limit", "3", name="curve")
    plain, curve = metric_rows(tmp_path / "plain"), metric_rows(tmp_path / "curve")
    assert [sorted(k for k in r if k.startswith("eval/")) for r in curve] == [
        [], ["eval/synthetic/agent0", "eval/synthetic/agent1"], [], ["eval/synthetic/agent0", "eval/synthetic/agent1"]]
    assert without_times(plain) == [{k: v for k, v in r.items() if not k.startswith("eval/")}
                                    for r in without_times(curve)]
    for i in (0, 1):
        a = weights(tmp_path / "plain" / "checkpoint" / f"agent{i}.pt")
        b = weights(tmp_path / "curve" / "checkpoint" / f"agent{i}.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)
    points = ilr.read_curve(tmp_path / "curve")
    assert list(points) == [0, 2, 4] and points[4] == {"agent0/synthetic": curve[3]["eval/synthetic/agent0"],
                                                       "agent1/synthetic": curve[3]["eval/synthetic/agent1"]}
    import evaluate
    assert len(evaluate.read_results(tmp_path / "curve" / "eval" / "curve-step2-agent1-synthetic.jsonl")) == 3
    assert not list((tmp_path / "curve" / "eval").glob("curve-step0-agent1-*"))  # identical untrained twins: once
    assert points[0]["agent1/synthetic"] == points[0]["agent0/synthetic"]
    assert ilr.read_curve(tmp_path / "plain") == {}
    ilr.plot_run(tmp_path / "curve")                                     # draws the held-out points too


def crash_at(monkeypatch, step_index):
    """Make train_step raise at 0-based step `step_index` (a killed process, as far as the run dir can tell)."""
    real = ilr.train_step

    def train_step(cfg, agents, records, difficulty, abilities, step):
        if step == step_index:
            raise KeyboardInterrupt("killed")
        return real(cfg, agents, records, difficulty, abilities, step)
    monkeypatch.setattr(ilr, "train_step", train_step)


def test_resume_after_a_crash_cuts_the_metrics_back_to_the_checkpoint(tmp_path, monkeypatch):
    crash_at(monkeypatch, 2)                                      # step 3 runs, logs, is not saved (save_steps 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, *SMALL, "--max_steps", "4", "--save_steps", "2")
    d = tmp_path / "run"
    assert [r["step"] for r in metric_rows(d)] == [1, 2] and not (d / "lock").exists()
    monkeypatch.undo()
    crash_at(monkeypatch, 3)                                      # now step 3 logs, step 4 crashes
    with pytest.raises(KeyboardInterrupt):
        ilr.main(["--resume", str(d)])
    assert [r["step"] for r in metric_rows(d)] == [1, 2, 3]       # a row ahead of the checkpoint (step 2)
    monkeypatch.undo()
    ilr.main(["--resume", str(d)])
    assert [r["step"] for r in metric_rows(d)] == [1, 2, 3, 4]    # not [1, 2, 3, 3, 4]


@pytest.mark.parametrize("crash_after", ["rename to old", "rename of tmp"])
def test_a_crash_inside_save_checkpoint_resumes_from_what_it_left(tmp_path, monkeypatch, crash_after):
    run(tmp_path, *SMALL, "--max_steps", "1", "--no-eval_base")
    d = tmp_path / "run"
    real_rename = Path.rename

    def rename(self, target):                                     # the second save (step 2) dies between renames
        if self.name == "checkpoint.tmp" or (crash_after == "rename to old" and self.name == "checkpoint"):
            raise KeyboardInterrupt("killed")
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        ilr.main(["--resume", str(d), "--max_steps", "2"])
    monkeypatch.undo()
    assert not (d / "checkpoint").exists() or crash_after == "rename to old"
    expected = 1 if crash_after == "rename to old" else 2         # the newest complete checkpoint left
    crash_at(monkeypatch, expected)                               # stop at the first step the resume runs
    with pytest.raises(KeyboardInterrupt):
        ilr.main(["--resume", str(d), "--max_steps", "3"])
    assert ilr.checkpoint_step(d / "checkpoint") == expected and not (d / "checkpoint.old").exists()
    assert [r["step"] for r in metric_rows(d)] == list(range(1, expected + 1))


def test_resume_refuses_settings_that_shape_the_training_and_writes_nothing(tmp_path, capsys):
    run(tmp_path, *SMALL, "--max_steps", "1", "--no-eval_base")
    capsys.readouterr()
    d = tmp_path / "run"
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    for args, message in [(["--num_agents", "3"], "--num_agents cannot change mid-run (saved 2, given 3)"),
                          (["--seed", "1"], "--seed cannot change"), (["--method", "grpo"], "--method cannot"),
                          (["--learning_rate", "0.5"], "--learning_rate cannot change"),
                          (["--output_dir", str(tmp_path / "elsewhere")], "leave --output_dir out"),
                          (["--preset", "demo"], "--preset with --resume")]:
        with pytest.raises(SystemExit) as e:
            ilr.main(["--resume", str(d)] + args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
    cfg, _ = ilr.parse_args(["--resume", str(d), "--max_steps", "5", "--eval_limit", "2", "--seed", "0",
                             "--output_dir", str(d)])                 # resumable, or unchanged: accepted
    assert (cfg.max_steps, cfg.eval_limit, cfg.output_dir) == (5, 2, str(d))


def test_a_second_process_in_the_same_run_directory_is_refused(tmp_path, capsys):
    import subprocess
    d = tmp_path / "run"
    d.mkdir()
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (d / "lock").write_text(str(holder.pid))
        with pytest.raises(SystemExit) as e:
            run(tmp_path, *SMALL, "--max_steps", "1")
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"is in use by process {holder.pid}" in err and err.count("\n") == 1
        assert not (d / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    run(tmp_path, *SMALL, "--max_steps", "1", "--no-eval_base")    # the holder is gone: its lock is taken over
    assert "taking over" in capsys.readouterr().out and not (d / "lock").exists()
    assert (d / "checkpoint" / "state.pt").is_file()


def test_a_run_leaves_config_metrics_transcripts_plot_and_results(tmp_path, capsys):
    out = run(tmp_path, "--max_steps", "2")
    d = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "results.json", "results.md", "curves.png", "checkpoint/state.pt"):
        assert (d / name).is_file(), name
    assert not (d / "tensorboard").exists()                      # --report_to none (the default): no tracker
    assert len(list((d / "transcripts").iterdir())) == 2
    import llm
    model, _ = llm.load_model(str(d / "final" / "agent1"))  # the trained agent, ready for evaluate.py --model
    saved = torch.load(d / "checkpoint" / "agent1.pt", weights_only=False)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert set(out["trained"]) == {"agent0/synthetic", "agent1/synthetic"}
    with pytest.raises(SystemExit):                              # never overwrite a run by accident
        run(tmp_path, "--max_steps", "2")
    assert "holds a run already" in capsys.readouterr().err
    import shutil
    shutil.rmtree(d / "checkpoint")                              # finished, its weights pruned (table1.py --prune)
    metrics = (d / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):
        run(tmp_path, "--max_steps", "2")
    assert "holds a run already" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ilr.main(["--resume", str(d)])
    assert "the run finished (results.json) and its checkpoint is gone" in capsys.readouterr().err
    assert (d / "metrics.jsonl").read_text() == metrics                 # nothing lost


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


# ---- cached inputs record what they were computed from ----

def test_irt_json_is_reused_only_for_the_same_inputs(tmp_path, monkeypatch):
    import irt
    calls = []
    monkeypatch.setattr(irt, "estimate_ability", lambda *a, **k: calls.append("ability") or 0.3)
    monkeypatch.setattr(irt, "estimate_difficulty", lambda models, questions, **k: (
        calls.append("difficulty") or torch.linspace(0, 1, len(questions)).numpy(), {}))
    agents = [ilr.Agent("a", None, None, None), ilr.Agent("b", None, None, None)]

    def inputs(*argv):
        cfg = ilr.parse_args(["--preset", "tiny"] + list(argv))[0]
        train, val = ilr.load_training_data(cfg)
        return ilr.irt_inputs(cfg, agents, train, val, tmp_path)
    difficulty, abilities = inputs("--interaction", "competition")           # not needed: skipped, stored
    assert calls == [] and abilities == [0.5, 0.5]
    difficulty, abilities = inputs()                                         # dynamic: the skip is not reused
    assert calls == ["ability", "ability", "difficulty"] and abilities == [0.3, 0.3]
    inputs()                                                                 # same inputs: reused
    assert len(calls) == 3
    inputs("--num_val", "7")                                                 # other validation questions
    inputs("--rank_splits", "2")                                             # other ranking
    assert len(calls) == 9
    inputs("--rank_splits", "2", "--batch_size", "3")                        # batching only: reused
    assert len(calls) == 9


def test_an_evaluation_file_is_continued_only_if_it_came_from_the_same_inputs(tmp_path, monkeypatch):
    seen = []

    def evaluate_model(model, tokenizer, records, out_path=None, **kwargs):
        seen.append(Path(out_path).read_text() if Path(out_path).exists() else None)
        Path(out_path).write_text("row\n")
        return {"pass@1": 0.0}
    monkeypatch.setattr(ilr.evaluate, "evaluate_model", evaluate_model)

    class Model:
        def eval(self):
            pass
    agents = [ilr.Agent("a", Model(), None, None), ilr.Agent("b", Model(), None, None)]
    cfg = ilr.parse_args(["--preset", "tiny", "--models", "tiny", "--eval_limit", "2"])[0]
    ilr.evaluate_alone(cfg, agents, tmp_path, "step2")
    ilr.evaluate_alone(cfg, agents, tmp_path, "step2")
    assert seen == [None, None, "row\n", "row\n"]                            # same inputs: continued
    other = ilr.parse_args(["--preset", "tiny", "--eval_limit", "2", "--learning_rate", "1e-3"])[0]
    ilr.evaluate_alone(other, agents, tmp_path, "step2")                     # another training: started over
    assert seen[4:] == [None, None]
    ilr.evaluate_alone(other, agents, tmp_path, "base")                      # the base row: one agent, twins share
    assert seen[6:] == [None]
    cfg3 = ilr.parse_args(["--preset", "tiny", "--eval_limit", "2", "--learning_rate", "1e-3",
                           "--eval_max_new_tokens", "5"])[0]
    ilr.evaluate_alone(cfg3, agents, tmp_path, "base")                       # other answer length: redone
    assert seen[7:] == [None]
    assert ilr.cached(tmp_path / "base.json", ilr.base_cache_inputs(cfg)) is None   # absent: nothing cached


def test_cached_compares_the_recorded_inputs(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"inputs": {"models": ["tiny", "tiny"], "seed": 0}, "results": {"a": 1}}))
    assert ilr.cached(path, {"models": ("tiny", "tiny"), "seed": 0})["results"] == {"a": 1}
    assert ilr.cached(path, {"models": ("tiny", "tiny"), "seed": 1}) is None
    path.write_text(json.dumps({"a": 1}))                                    # written before inputs were recorded
    assert ilr.cached(path, {"seed": 0}) is None


# ---- seeds, devices ----

def test_grpo_baseline_gives_every_step_and_agent_its_own_seed(monkeypatch):
    import llm
    seeds = []

    def generate(model, tokenizer, prompts, n=1, seed=None, **kwargs):
        seeds.append(seed)
        return llm.Generation(prompt_ids=[[1]] * len(prompts), completion_ids=[[[2]] * n for _ in prompts],
                              texts=[["x"] * n for _ in prompts], finished=[[True] * n for _ in prompts])
    monkeypatch.setattr(llm, "generate", generate)
    cfg = ilr.parse_args(["--preset", "tiny", "--method", "grpo", "--num_agents", "3"])[0]
    agents = [ilr.Agent(str(i), None, None, None) for i in range(3)]
    for step in range(30):
        ilr.generate_groups(cfg, agents, [{"question": "Q", "kind": "math"}], ["competition"],
                            ilr.step_seed(cfg.seed, step))
    assert len(seeds) == 90 and len(set(seeds)) == 90     # was step_seed + i: agent 1 at s = agent 0 at s + 1


def test_a_checkpoint_written_on_a_gpu_in_bf16_resumes_on_the_cpu(tmp_path, monkeypatch):
    """Saved as a CUDA run saves it (storages tagged 'cuda:0', bf16 weights), loaded into fp32 CPU agents."""
    import torch.serialization as ts
    cfg = ilr.parse_args(["--preset", "tiny"])[0]
    saved_agents = ilr.make_agents(cfg)
    for a in saved_agents:
        a.model.to(torch.bfloat16)
    with monkeypatch.context() as m:                      # every storage is written as if it lived on cuda:0
        m.setattr(ts, "location_tag", lambda storage: "cuda:0")
        ilr.save_checkpoint(tmp_path, saved_agents, 3)
    if not torch.cuda.is_available():                     # without map_location this load is what failed
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "checkpoint" / "agent0.pt", weights_only=False)
    agents = ilr.make_agents(cfg)
    assert ilr.load_checkpoint(tmp_path, agents) == 3
    for a, b in zip(agents, saved_agents):
        for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            assert p.dtype == torch.float32 and p.device.type == "cpu"
            assert torch.equal(p, q.float()), name


def test_level_difficulty_on_the_ladder_splits_the_modes_and_logs_them_per_level(tmp_path, monkeypatch):
    import data
    import irt
    monkeypatch.setattr(irt, "estimate_ability", lambda *args, **kwargs: 0.3)  # gamma of both agents
    monkeypatch.setattr(irt, "estimate_difficulty", lambda *a, **k: pytest.fail("self-ranking was run"))
    run(tmp_path, "--train_data", "ladder", "--val_data", "ladder", "--train_levels", "1,2,3,4,5",
        "--difficulty", "level", "--num_train", "10", "--questions_per_step", "5", "--max_steps", "2",
        "--eval_benchmarks", "ladder", "--eval_limit", "1")
    saved = json.loads((tmp_path / "run" / "irt.json").read_text())
    train = data.ladder_problems(10, seed=1_000_003, split="train")        # the training questions (seed 0)
    assert saved["difficulty"] == [(r["meta"]["level"] - 1) / 4 for r in train] and saved["abilities"] == [0.3, 0.3]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for step, row in enumerate(rows):
        batch = [train[q]["meta"]["level"] for q in ilr.step_questions(10, step, 5, seed=0)]  # B = 5 levels
        # gamma 0.3: levels 1-2 (D 0, 0.25) are easy -> compete; 3-5 -> cooperate; None = not in this batch
        expected = {k: (None if k not in batch else float(k >= 3)) for k in range(1, 6)}
        assert {k: row[f"ilr/cooperation_share/level{k}"] for k in range(1, 6)} == expected
        assert row["ilr/cooperation_share"] == pytest.approx(sum(k >= 3 for k in batch) / 5)
    assert {v for row in rows for k, v in row.items() if k.startswith("ilr/cooperation_share/")} >= {0.0, 1.0}


def test_an_fp16_runs_loss_scale_is_saved_and_restored(tmp_path):
    """The GradScaler's scale adapts during a run (halved on every inf/nan step); a resume that restarted it at
    its initial 2**16 would skip steps again until it had re-learned it."""
    cfg = ilr.parse_args(["--preset", "tiny"])[0]
    saved_agents = ilr.make_agents(cfg)
    for k, a in enumerate(saved_agents):
        a.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** (10 + k))
    ilr.save_checkpoint(tmp_path, saved_agents, 1)
    agents = ilr.make_agents(cfg)
    for a in agents:
        a.scaler = torch.amp.GradScaler("cpu")                              # a fresh run's initial 2**16
    assert ilr.load_checkpoint(tmp_path, agents) == 1
    assert [a.scaler.get_scale() for a in agents] == [2.0 ** 10, 2.0 ** 11]


# ---- --reward digits: partial credit on the ladder (README, "Choices where the paper is open") ----

LADDER_85 = {"kind": "math", "answer": "85", "meta": {"benchmark": "ladder", "level": 3}}   # 47 + 38


@pytest.mark.parametrize("answer,expected", [
    ("47 + 38 = 85", 1.0),          # right: full credit
    ("47 + 38 = 75", 0.25),         # the carry lost: ones place right, 1 of 2 places, times 0.5
    ("95", 0.25),                   # tens wrong, ones right
    ("185", 0.5 * 2 / 3),           # two places right, but three digits for a two-digit answer
    ("58", 0.0),                    # digits swapped: no place right
    ("-85", 0.0),                   # not a non-negative integer
    ("I don't know", 0.0),          # no answer
])
def test_digit_credit_gives_each_level_its_hand_computed_value(answer, expected):
    assert ilr.digit_credit(answer, LADDER_85) == pytest.approx(expected)
    assert ilr.answer_reward(answer, LADDER_85, 0.0, "digits") == pytest.approx(expected)
    assert ilr.answer_reward(answer, LADDER_85, 0.0) == (1.0 if expected == 1.0 else 0.0)   # accuracy: 0 or 1


def test_digits_reward_has_three_levels_on_a_ladder_group_and_adds_the_format_term():
    texts = ["85", "75", "\\boxed{75}", "13"]
    group = ilr.Group("fusion", 0, 0, LADDER_85, [[1]] * 4, [[2]] * 4, texts)
    correct = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    digits = ilr.group_rewards([group], 0.1, correct, "digits")
    torch.testing.assert_close(digits, torch.tensor([[1.0, 0.25, 0.35, 0.0]]))
    torch.testing.assert_close(ilr.group_rewards([group], 0.1, correct), torch.tensor([[1.0, 0.0, 0.1, 0.0]]))


def test_the_default_reward_is_accuracy_and_a_tiny_run_logs_identical_metrics_with_it_named(tmp_path):
    assert ilr.Config().reward == "accuracy"
    run(tmp_path, "--max_steps", "1", "--eval_limit", "1", name="default")
    run(tmp_path, "--max_steps", "1", "--eval_limit", "1", "--reward", "accuracy", name="named")
    rows = [without_times(metric_rows(tmp_path / name)) for name in ("default", "named")]
    assert rows[0] == rows[1]
    rows = rows[0]
    assert 0.0 <= rows[0]["ilr/calibration_clip_share"] <= 1.0


def test_the_clip_share_is_logged_for_ilr_only_and_computed_per_question_and_agent(tmp_path, monkeypatch):
    fixed = torch.tensor([[1.0, 0.25, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0]])   # agent 0's clip binds, agent 1's not
    monkeypatch.setattr(ilr, "group_rewards", lambda groups, *a: fixed[[g.agent for g in groups]])
    run(tmp_path, "--max_steps", "1", "--eval_limit", "1", "--questions_per_step", "2", name="ilr")
    run(tmp_path, "--max_steps", "1", "--eval_limit", "1", "--method", "grpo", name="grpo")
    assert metric_rows(tmp_path / "ilr")[0]["ilr/calibration_clip_share"] == 0.5
    assert metric_rows(tmp_path / "grpo")[0]["ilr/calibration_clip_share"] is None
