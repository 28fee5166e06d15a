"""EXERCISES.md: one test (or a few) per exercise — the knob the exercise names exists, sits where the exercise
says, and changes the behaviour the exercise claims. If one of these fails after a code change, the exercise
text is out of date: change EXERCISES.md together with the code.

Most tests are pure: fixed difficulties, abilities and answer texts go through the real `ilr.train_step` with
the generation and the GRPO update replaced by stubs (`stub_step` below), so what is tested is the wiring from
the command-line flag to the mode, the reward, the calibration and the advantages that reach `grpo.grpo_step`.
The three-agent, sharing-stage, debate and KL tests use the tiny random model (a few seconds each).
"""
import copy
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import data
import evaluate
import grpo
import idea3
import ilr
import irt
import llm

# ----------------------------------------------------------------------------------------------------------
# A training step without models: fixed answers in, the advantages handed to grpo_step out
# ----------------------------------------------------------------------------------------------------------

WRONG_BOXED = "\\boxed{999}"   # well formed, wrong: reward = format_reward
NO_ANSWER = "no idea"           # neither: reward 0


def correct(record):            # correct and well formed: reward = 1 + format_reward
    return f"\\boxed{{{record['answer']}}}"


class StubModel:
    def eval(self):
        pass

    def train(self):
        pass


def stub_agents(M):
    return [ilr.Agent(f"agent{i}:stub", StubModel(), SimpleNamespace(pad_token_id=0), optimizer=None)
            for i in range(M)]


def stub_step(monkeypatch, argv, answers, records, difficulty=None, abilities=None):
    """ilr.train_step (step 0, all records in one batch) for the flags `argv` on top of --preset tiny.

    answers(i, b, record, G) -> the G answer texts of agent i on question b. Returns (metrics, the modes the
    generation received, the advantages [G*B] grpo_step received per agent).
    """
    cfg, _ = ilr.parse_args(["--preset", "tiny", "--questions_per_step", str(len(records))] + argv)
    ilr.check_config(cfg)
    seen = {"modes": None, "advantages": [], "kwargs": []}

    def generate_groups(cfg, agents, questions, modes, seed):
        seen["modes"] = list(modes)
        G = cfg.num_generations
        groups = [ilr.Group("fusion", i, b, rec, [[1]] * G, [[2]] * G, answers(i, b, rec, G))
                  for i in range(len(agents)) for b, rec in enumerate(questions)]
        return groups, [{"mode": m} for m in modes], {}

    def grpo_step(model, optimizer, batch, advantages, ref_model=None, **kwargs):
        seen["advantages"].append(advantages.clone())
        seen["kwargs"].append(kwargs)
        return {"kl": 0.0, "clip_ratio": 0.0, "frac_skipped": 0.0, "loss": 0.0, "grad_norm": 0.0, "skipped_updates": 0}

    monkeypatch.setattr(ilr, "generate_groups", generate_groups)
    monkeypatch.setattr(grpo, "grpo_step", grpo_step)
    difficulty = np.full(len(records), 0.5) if difficulty is None else np.asarray(difficulty, float)
    abilities = [0.5] * cfg.num_agents if abilities is None else abilities
    metrics, _ = ilr.train_step(cfg, stub_agents(cfg.num_agents), records, difficulty, abilities, step=0)
    stub_step.kwargs = seen["kwargs"]                         # grpo_step's keyword arguments, per agent
    return metrics, seen["modes"], seen["advantages"]


def no_answers(i, b, record, G):
    return [NO_ANSWER] * G


RECORDS10 = data.synthetic_problems(10, seed=0, levels=(1,))
GRID = [0.05 + 0.1 * k for k in range(10)]   # D_q of the ten questions: 0.05, 0.15, ..., 0.95
LADDER16 = data.ladder_problems(16, seed=0, levels=(1, 2, 3, 4))      # the demo's levels, four of each
LADDER_D = irt.level_difficulty([r["meta"]["level"] for r in LADDER16])  # D_q = 0, 1/3, 2/3, 1 (--difficulty level)
GAMMA = 0.375                                                          # 9 of 24: the demo's γ on a 2-core run


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the IRT threshold, scale and agent rule move the cooperation share
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,share", [
    ([], 0.6),                                              # P < 0.5  <=>  D > gamma = 0.38: six of ten
    (["--irt_threshold", "0.3"], 0.1),                      # D > 0.38 + logit(0.7)/1.7 = 0.878: one of ten
    (["--irt_threshold", "0.3", "--irt_scale", "3.4"], 0.4),  # D > 0.38 + logit(0.7)/3.4 = 0.629: four
    (["--irt_scale", "3.4"], 0.6),                          # at the 0.5 threshold the scale changes nothing
])
def test_ex1_irt_threshold_and_scale_flags_change_the_cooperation_share(monkeypatch, argv, share):
    metrics, modes, _ = stub_step(monkeypatch, argv, no_answers, RECORDS10, GRID, abilities=[0.38, 0.38])
    assert metrics["ilr/cooperation_share"] == pytest.approx(share)
    assert modes.count("cooperation") == round(10 * share)


@pytest.mark.parametrize("argv,levels", [
    ([], {3, 4}),                                           # D > γ = 0.375
    (["--irt_threshold", "0.3"], {4}),                      # D > 0.375 + logit(0.7)/1.7 = 0.873
    (["--irt_threshold", "0.3", "--irt_scale", "3.4"], {3, 4}),   # D > 0.375 + logit(0.7)/3.4 = 0.624
    (["--irt_threshold", "0.6"], {2, 3, 4}),                # D > 0.375 - logit(0.6)/1.7 = 0.137
    (["--irt_threshold", "0.7"], {1, 2, 3, 4}),             # D > 0.375 - 0.498 < 0: every level
    (["--irt_threshold", "0.7", "--irt_scale", "3.4"], {2, 3, 4}),  # D > 0.375 - 0.249 = 0.126
])
def test_ex1_on_the_ladder_the_threshold_and_scale_move_whole_levels(monkeypatch, argv, levels):
    """Exercise 1's table: with D_q from the level and γ = 0.375, each setting cooperates on whole levels."""
    metrics, modes, _ = stub_step(monkeypatch, argv, no_answers, LADDER16, LADDER_D, abilities=[GAMMA, GAMMA])
    by_level = {k: metrics[f"ilr/cooperation_share/level{k}"] for k in (1, 2, 3, 4)}   # the step's 16 questions
    assert by_level == {k: float(k in levels) for k in (1, 2, 3, 4)}
    assert metrics["ilr/cooperation_share"] == modes.count("cooperation") / 16 == len(levels) / 4


def test_ex1_agents_reduce_matters_only_when_the_abilities_differ():
    share = lambda modes: modes.count("cooperation") / len(modes)
    different = {rule: share(irt.assign_modes(GRID, [0.1, 0.7], agents_reduce=rule)) for rule in ("min", "mean", "max")}
    assert different == {"min": 0.9, "mean": 0.6, "max": 0.3}   # D > 0.1 / D > 0.4 (mean logit) / D > 0.7
    same = {rule: share(irt.assign_modes(GRID, [0.38, 0.38], agents_reduce=rule)) for rule in ("min", "mean", "max")}
    assert set(same.values()) == {0.6}


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: pure cooperation, pure competition, a fixed ratio p (Figure 3)
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,share", [(["--interaction", "cooperation"], 1.0),
                                        (["--interaction", "competition"], 0.0)])
def test_ex2_interaction_flag_forces_one_mode_whatever_the_difficulty(monkeypatch, argv, share):
    metrics, modes, _ = stub_step(monkeypatch, argv, no_answers, RECORDS10, GRID, abilities=[0.38, 0.38])
    assert metrics["ilr/cooperation_share"] == share and len(set(modes)) == 1


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.75, 1.0])
def test_ex2_random_interaction_cooperates_with_probability_cooperation_ratio(monkeypatch, ratio):
    records = data.synthetic_problems(200, seed=0, levels=(1,))
    metrics, modes, _ = stub_step(monkeypatch, ["--interaction", "random", "--cooperation_ratio", str(ratio)],
                                  no_answers, records)
    share = metrics["ilr/cooperation_share"]
    assert share == modes.count("cooperation") / 200
    assert share == pytest.approx(ratio, abs=0.1)      # 200 draws: sd <= 0.035; 0.25 and 0.75 are 5 sd from 0.5
    draws = irt.assign_modes([0.5] * 4000, [0.5, 0.5], "random", cooperation_ratio=0.25, rng=0)
    assert draws.count("cooperation") / 4000 == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ilr.ConfigError):
        ilr.check_config(ilr.parse_args(["--cooperation_ratio", "1.5"])[0])


def test_ex2_the_mode_changes_only_the_framing_of_analysis_and_fusion():
    coop = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "cooperation")
    comp = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "competition")
    assert "partner" in coop and "competitor" in comp and coop != comp
    record = {"kind": "math", "question": "Q?"}
    assert idea3.sharing_prompt(record) == evaluate.test_prompt(record)   # Sharing: the same in both modes


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: calibration is a no-op with binary rewards and std advantages; a format term or 'none' changes that
# ----------------------------------------------------------------------------------------------------------

BINARY_GROUPS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))   # all 16 binary groups of G = 4


def test_ex3_calibration_is_a_noop_for_binary_rewards_with_std_advantages():
    for own, peer in itertools.product(BINARY_GROUPS, BINARY_GROUPS):     # all 256 pairs of two agents
        rewards = torch.stack([own, peer])                                  # [M=2, G=4]
        raw = grpo.group_advantages(rewards)
        calibrated = grpo.group_advantages(grpo.perception_calibration(rewards))
        assert torch.allclose(raw, calibrated, atol=1e-3)                   # equal up to TRL's std eps (1e-4)


def test_ex3_calibration_doubles_mean_only_advantages_of_two_agents_with_binary_rewards():
    for own, peer in itertools.product(BINARY_GROUPS, BINARY_GROUPS):
        rewards = torch.stack([own, peer])
        raw = grpo.group_advantages(rewards, scale="none")
        calibrated = grpo.group_advantages(grpo.perception_calibration(rewards), scale="none")
        assert torch.allclose(calibrated, 2 * raw, atol=1e-6)


def test_ex3_calibration_changes_std_advantages_once_the_reward_has_a_format_term():
    rewards = torch.tensor([[1.1, 0.1, 0.1, 0.0],    # agent 0: correct+boxed, boxed, boxed, nothing
                            [0.1, 0.1, 0.0, 0.0]])   # its peer: range 0.1, so the clip of Eq. 5 binds
    calibrated = grpo.perception_calibration(rewards)
    assert torch.allclose(calibrated[0], torch.tensor([2.1, 0.6, 0.6, -0.5]))
    assert not torch.allclose(grpo.group_advantages(rewards)[0], grpo.group_advantages(calibrated)[0], atol=1e-2)


def two_question_answers(i, b, record, G):
    """Agent 0: [correct, boxed-wrong, boxed-wrong, nothing] on question 0 and [correct, correct, nothing,
    nothing] on question 1; agent 1: [boxed-wrong, boxed-wrong, nothing, nothing], then [correct, nothing x3]."""
    table = {(0, 0): [correct(record), WRONG_BOXED, WRONG_BOXED, NO_ANSWER],
             (0, 1): [correct(record), correct(record), NO_ANSWER, NO_ANSWER],
             (1, 0): [WRONG_BOXED, WRONG_BOXED, NO_ANSWER, NO_ANSWER],
             (1, 1): [correct(record), NO_ANSWER, NO_ANSWER, NO_ANSWER]}
    return table[(i, b)]


def advantages_for(monkeypatch, argv):
    _, _, advantages = stub_step(monkeypatch, argv, two_question_answers, RECORDS10[:2])
    return torch.cat(advantages)                               # [M * B * G] agent 0's rows, then agent 1's


def test_ex3_format_reward_0_makes_the_no_calibration_flag_change_nothing(monkeypatch):
    binary = ["--format_reward", "0"]
    assert torch.allclose(advantages_for(monkeypatch, binary),
                          advantages_for(monkeypatch, binary + ["--no-calibration"]), atol=1e-3)


def test_ex3_with_the_format_term_calibration_changes_the_advantages(monkeypatch):
    assert ilr.parse_args([])[0].format_reward > 0                 # the default reward has the format term
    calibrated = advantages_for(monkeypatch, ["--format_reward", "0.1"])
    raw = advantages_for(monkeypatch, ["--format_reward", "0.1", "--no-calibration"])
    assert (calibrated - raw).abs().max() > 0.05


def test_ex3_scale_rewards_none_turns_calibration_into_a_factor_2_for_two_agents(monkeypatch):
    argv = ["--format_reward", "0", "--scale_rewards", "none"]
    calibrated = advantages_for(monkeypatch, argv)
    raw = advantages_for(monkeypatch, argv + ["--no-calibration"])
    assert raw.abs().max() > 0 and torch.allclose(calibrated, 2 * raw, atol=1e-6)


def ladder_answers(i, b, record, G):
    """Unboxed answers as SmolLM2 writes them on the ladder: right ("a + b = gold") or wrong, per agent and question."""
    right, wrong = f"{record['question'].split('?')[0][8:]} = {record['answer']}", "The answer is 1000."
    pattern = {(0, 0): [1, 0, 0, 0], (0, 1): [1, 1, 0, 0], (1, 0): [1, 1, 1, 0], (1, 1): [0, 1, 0, 0]}[(i, b)]
    return [right if ok else wrong for ok in pattern]


def test_ex3_on_the_ladder_the_default_reward_is_binary_so_calibration_changes_nothing(monkeypatch):
    records = LADDER16[:2]
    assert records[0]["question"].endswith(data.LADDER_SUFFIX) and "boxed" not in records[0]["question"]
    assert ilr.answer_reward(ladder_answers(0, 0, records[0], 4)[0], records[0], 0.1) == 1.0   # no format term
    metrics, _, calibrated = stub_step(monkeypatch, [], ladder_answers, records)
    assert metrics["reward"] == metrics["accuracy"] == pytest.approx(7 / 16)   # reward = accuracy: binary
    _, _, raw = stub_step(monkeypatch, ["--no-calibration"], ladder_answers, records)
    calibrated, raw = torch.cat(calibrated), torch.cat(raw)
    assert raw.abs().max() > 0 and torch.allclose(calibrated, raw, atol=1e-3)
    _, _, none_calibrated = stub_step(monkeypatch, ["--scale_rewards", "none"], ladder_answers, records)
    _, _, none_raw = stub_step(monkeypatch, ["--scale_rewards", "none", "--no-calibration"], ladder_answers, records)
    assert torch.allclose(torch.cat(none_calibrated), 2 * torch.cat(none_raw), atol=1e-6)


def test_ex3_python_grpo_py_prints_equal_binary_and_different_multilevel_advantages(capsys):
    grpo.main()
    out = capsys.readouterr().out
    blocks = out.split("== ")[1:]
    assert blocks[0].startswith("binary") and blocks[1].startswith("multi-level")

    def advantage_lines(block):
        return [line.split("calibration")[1].strip() for line in block.splitlines() if "std advantages" in line]

    without, with_ = advantage_lines(blocks[0])
    assert without == with_
    without, with_ = advantage_lines(blocks[1])
    assert without != with_


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: three agents
# ----------------------------------------------------------------------------------------------------------

def copies_of(tiny):
    """ilr.load_agent_model for tests: a fresh copy of the session's tiny model (no tokenizer reload)."""
    return lambda name, seed: (copy.deepcopy(tiny[0]), tiny[1])


def test_ex4_three_agents_train_one_step_and_log_agent2_on_the_tiny_model(monkeypatch, tiny):
    cfg, _ = ilr.parse_args(["--preset", "tiny", "--num_agents", "3", "--questions_per_step", "1",
                             "--num_generations", "2", "--max_completion_length", "4"])
    ilr.check_config(cfg)
    monkeypatch.setattr(ilr, "load_agent_model", copies_of(tiny))
    agents = ilr.make_agents(cfg)
    assert len(agents) == 3
    records = data.synthetic_problems(2, seed=0, levels=(1,))
    metrics, transcripts = ilr.train_step(cfg, agents, records, np.full(2, 0.5), [0.5] * 3, step=0)
    assert {"agent2/reward", "agent2/calibrated_reward", "agent2/accuracy"} <= set(metrics)
    assert len(transcripts[0]["agents"]) == 3 and len(transcripts[0]["fusion"]) == 3
    assert " a2 r=" in ilr.format_line(metrics, 3)


def test_ex4_with_three_agents_each_reads_two_peers_and_each_peer_term_is_clipped_to_half():
    p = idea3.fusion_prompt("Q?", "S0", ["S1", "S2"], "A0", ["A1", "A2"], "cooperation")
    assert "Partner 1's solution:\nS1" in p and "Partner 2's solution:\nS2" in p
    peer = [1.0, 0.0, 0.0, 0.0]                                          # mean 0.25, range 1
    three = grpo.perception_calibration(torch.tensor([[1.0, 0, 0, 0], peer, peer]))[0]
    two = grpo.perception_calibration(torch.tensor([[1.0, 0, 0, 0], peer]))[0]
    assert torch.allclose(three, torch.tensor([2.0, -0.5, -0.5, -0.5]))  # 1 + 2 * clip(0.75, +-1/2)
    assert torch.allclose(two, torch.tensor([1.75, -0.25, -0.25, -0.25]))  # 1 + clip(0.75, +-1)


def test_ex4_with_three_agents_binary_calibration_reweights_questions_under_mean_only_advantages():
    def factor(peer):                                 # calibrated / raw mean-only advantage of agent 0
        rewards = torch.tensor([[1.0, 0, 0, 0], peer, peer])
        raw = grpo.group_advantages(rewards, scale="none")[0]
        return (grpo.group_advantages(grpo.perception_calibration(rewards), scale="none")[0] / raw).tolist()
    assert factor([1.0, 0, 0, 0]) == pytest.approx([2.5] * 4)      # 1 + 2 * (0.5 + 0.25)
    assert factor([1.0, 1, 0, 0]) == pytest.approx([3.0] * 4)      # 1 + 2 * (0.5 + 0.5)


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: two different models
# ----------------------------------------------------------------------------------------------------------

def test_ex5_a_hopeless_peer_makes_the_agents_rule_matter_on_the_ladder():
    share = lambda rule: irt.assign_modes(LADDER_D, [GAMMA, 0.0], agents_reduce=rule).count("cooperation") / 16
    # level 1 (D 0): P = [0.65, 0.5], no rule cooperates; level 2 (D 1/3): P = [0.52, 0.36], min and mean do;
    # levels 3-4: every rule does
    assert {rule: share(rule) for rule in ("min", "mean", "max")} == {"min": 0.75, "mean": 0.75, "max": 0.5}


def test_ex5_check_config_accepts_two_different_models_without_loading_them(tmp_path):
    for models in ("smollm2-135m,tiny", f"smollm2-135m,{tmp_path}", "Qwen/Qwen2.5-0.5B-Instruct,smollm2-135m"):
        cfg = ilr.Config(models=models)
        ilr.check_config(cfg)
        assert ilr.model_names(cfg) == models.split(",")
    with pytest.raises(ilr.ConfigError, match="unknown model"):
        ilr.check_config(ilr.Config(models="smollm2-135m,./no/such/folder"))


def test_ex5_make_agents_loads_each_named_model_once_per_agent(monkeypatch):
    loaded = []

    def fake_load(name, seed):
        loaded.append(name)
        return torch.nn.Linear(2, 2), SimpleNamespace(pad_token_id=0)

    monkeypatch.setattr(ilr, "load_agent_model", fake_load)
    agents = ilr.make_agents(ilr.Config(models="smollm2-135m,runs/ex5/model"))
    assert loaded == ["smollm2-135m", "runs/ex5/model"]
    assert [a.name for a in agents] == ["agent0:smollm2-135m", "agent1:runs/ex5/model"]
    assert agents[0].model is not agents[1].model


def test_ex5_a_runs_final_agent_folder_is_a_model_ilr_can_pair(tmp_path, monkeypatch, tiny):
    """Exercise 5 pairs the base model with RUN/final/agent0 of a 4-step GRPO run: a one-agent --method grpo run
    on the tiny model leaves that folder, and it loads as a model of its own (its own IRT cache)."""
    base, _ = tiny
    monkeypatch.setattr(ilr, "load_agent_model", copies_of(tiny))
    monkeypatch.setattr(ilr, "grade_groups", lambda groups: torch.tensor(    # mixed rewards: the update moves it
        [[float(k % 2) for k in range(len(g.texts))] for g in groups]))
    monkeypatch.chdir(tmp_path)
    ilr.main(["--preset", "tiny", "--method", "grpo", "--num_agents", "1", "--max_steps", "1", "--no-eval_base",
              "--eval_limit", "1", "--num_generations", "2", "--max_completion_length", "4",
              "--learning_rate", "1e-2", "--output_dir", "runs/ex5-grpo"])
    folder = tmp_path / "runs" / "ex5-grpo" / "final" / "agent0"
    ilr.check_config(ilr.Config(models=f"{folder},tiny"))
    state = torch.load(tmp_path / "runs" / "ex5-grpo" / "checkpoint" / "agent0.pt", weights_only=False)["model"]
    model = copy.deepcopy(base)
    model.load_state_dict(state)                                  # the trained weights, as the checkpoint holds them
    exported, _ = llm.load_model(str(folder))
    trained, reloaded = model.state_dict(), exported.state_dict()
    assert trained.keys() == reloaded.keys() and all(torch.equal(trained[k], reloaded[k]) for k in trained)
    assert irt.model_identity(exported) != irt.model_identity(base)      # so it gets its own IRT cache


# ----------------------------------------------------------------------------------------------------------
# Exercise 6: plain debate instead of Idea3, at inference
# ----------------------------------------------------------------------------------------------------------

def test_ex6_debate_prompt_differs_from_both_idea3_prompts():
    debate = idea3.debate_prompt("Q?", "S0", ["S1"])
    analysis = idea3.analysis_prompt("Q?", "S0", ["S1"], "cooperation")
    fusion = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "cooperation")
    assert len({debate, analysis, fusion}) == 3
    assert "analysis" not in debate.lower() and ("debate", None) in idea3.PROMPTS


def test_ex6_replacing_the_fusion_prompt_with_the_debate_prompt_takes_one_assignment(monkeypatch):
    monkeypatch.setitem(idea3.PROMPTS, ("fusion", "cooperation"), idea3.PROMPTS[("debate", None)])
    p = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "cooperation")
    assert "additional advice" in p and "partner's reasoning" in p


def test_ex6_compare_command_runs_single_debate_and_idea3_on_the_tiny_model(monkeypatch, tiny):
    monkeypatch.setattr(llm, "tiny_model", lambda seed=0: tiny)      # the session's copy; compare only reads it
    result = idea3.main(["compare", "--models", "tiny,tiny", "--benchmark", "synthetic", "--limit", "2",
                         "--modes", "single,debate,idea3", "--max-new-tokens", "4",
                         "--analysis-max-new-tokens", "4", "--peer-token-budget", "16", "--temperature", "0.7"])
    assert list(result["accuracy"]) == ["single", "debate", "idea3 (cooperation)"]
    assert all(len(v) == 2 for v in result["accuracy"].values())
    assert "revision" in result["transcripts"]["debate"][0]
    assert "analysis" in result["transcripts"]["idea3 (cooperation)"][0]


# ----------------------------------------------------------------------------------------------------------
# Exercise 7: train the Sharing stage too
# ----------------------------------------------------------------------------------------------------------

def test_ex7_train_stages_sharing_fusion_trains_test_time_prompt_answers_as_their_own_groups(tiny):
    cfg, _ = ilr.parse_args(["--preset", "tiny", "--train_stages", "sharing,fusion", "--num_generations", "2",
                             "--max_completion_length", "4"])
    ilr.check_config(cfg)
    model, tokenizer = tiny                                      # generation only: the weights are not changed
    agents = [ilr.Agent(f"agent{i}:tiny", model, tokenizer, None) for i in range(2)]
    record = data.synthetic_problems(1, seed=0, levels=(1,))[0]
    groups, _, _ = ilr.generate_groups(cfg, agents, [record], ["cooperation"], seed=0)
    assert sorted({g.stage for g in groups}) == ["fusion", "sharing"]
    assert ilr.peer_sets(groups) == [[0, 1], [2, 3]]          # Eq. 5 pairs the agents within each stage
    sharing = [g for g in groups if g.stage == "sharing"][0]
    assert sharing.prompt_ids[0] == llm.chat_prompt_ids(tokenizer, evaluate.test_prompt(record))


# ----------------------------------------------------------------------------------------------------------
# Exercise 8: the group size G and zero-variance groups
# ----------------------------------------------------------------------------------------------------------

def test_ex8_more_generations_leave_fewer_zero_std_groups():
    rng = np.random.default_rng(0)
    share = {G: grpo.reward_stats(torch.tensor(rng.random((2000, G)) < 0.1, dtype=torch.float32))
             ["frac_reward_zero_std"] for G in (2, 4, 16)}
    for G, value in share.items():                    # P(all equal) = 0.9^G + 0.1^G for a 10 % solve rate
        assert value == pytest.approx(0.9 ** G + 0.1 ** G, abs=0.03)
    assert share[2] > share[4] > share[16]
    assert ilr.parse_args(["--num_generations", "8"])[0].num_generations == 8


# ----------------------------------------------------------------------------------------------------------
# Exercise 9: a KL penalty (beta > 0) loads a frozen reference and makes kl non-zero
# ----------------------------------------------------------------------------------------------------------

def test_ex9_beta_above_zero_loads_a_frozen_reference_and_kl_grows_as_the_policy_moves(monkeypatch):
    loaded = []

    def fake_load(name, seed):
        loaded.append(name)
        return torch.nn.Linear(2, 2), SimpleNamespace(pad_token_id=0)

    monkeypatch.setattr(ilr, "load_agent_model", fake_load)
    with_ref = ilr.make_agents(ilr.parse_args(["--preset", "tiny", "--beta", "0.04"])[0])
    assert len(loaded) == 4                                           # 2 agents x (policy + reference)
    assert all(a.ref_model is not None and not any(p.requires_grad for p in a.ref_model.parameters())
               for a in with_ref)
    assert ilr.make_agents(ilr.parse_args(["--preset", "tiny"])[0])[0].ref_model is None
    assert len(loaded) == 6                                           # beta = 0: no reference loaded
    logps = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    _, same = grpo.grpo_loss(logps, None, torch.zeros(1), mask, ref_per_token_logps=logps, beta=0.04)
    _, moved = grpo.grpo_loss(logps, None, torch.zeros(1), mask, ref_per_token_logps=logps - 0.5, beta=0.04)
    assert same["kl"] == 0.0 and moved["kl"] == pytest.approx(math.exp(-0.5) + 0.5 - 1, rel=1e-5)


def test_ex9_beta_and_the_skip_flag_reach_grpo_step(monkeypatch):
    stub_step(monkeypatch, ["--beta", "0.04"], no_answers, RECORDS10[:2])
    assert [(k["beta"], k["skip_zero_advantage_kl_approx"]) for k in stub_step.kwargs] == [(0.04, False)] * 2
    stub_step(monkeypatch, ["--beta", "0.04", "--skip_zero_advantage_kl_approx"], no_answers, RECORDS10[:2])
    assert [k["skip_zero_advantage_kl_approx"] for k in stub_step.kwargs] == [True, True]


# ----------------------------------------------------------------------------------------------------------
# The snippets of EXERCISES.md that need no model run as written (on a fake run directory)
# ----------------------------------------------------------------------------------------------------------

EXERCISES_MD = Path(__file__).resolve().parents[1] / "EXERCISES.md"
NEEDS_A_MODEL = ("load_model", "idea3.main")


def heredocs(text):
    """The Python of every `python - <<'EOF' ... EOF` block."""
    return re.findall(r"python - <<'EOF'\n(.*?)\nEOF", text, re.DOTALL)


def one_liners(text):
    """Every `python -c "..."` command line (with its arguments)."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith('python -c "')]


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A working directory shaped like the real runs the snippets read: runs/ex1/irt.json and metrics.jsonl,
    runs/ex5-tiny-peer/irt.json (γ = [0.375, 0]) and runs/ex8/samples16/ladder.jsonl (evaluate.py --samples 16)."""
    for name, gamma in (("ex1", [GAMMA, GAMMA]), ("ex5-tiny-peer", [GAMMA, 0.0])):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "irt.json").write_text(json.dumps({"abilities": gamma, "difficulty": LADDER_D.tolist(),
                                                  "stats": {"difficulty": "level"}}))
    (tmp_path / "runs" / "ex1" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward": 0.1 * s, "ilr/cooperation_share": 0.5}) + "\n" for s in (1, 2)))
    # level 1: 8 right of 16, alternating (mixed from G = 2); level 4: only the 5th answer right (mixed from G = 8)
    rows = [{"level": 1, "samples": [{"correct": k % 2 == 0} for k in range(16)]},
            {"level": 4, "samples": [{"correct": k == 4} for k in range(16)]}]
    (tmp_path / "runs" / "ex8" / "samples16").mkdir(parents=True)
    (tmp_path / "runs" / "ex8" / "samples16" / "ladder.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_snippets_of_exercises_md_without_a_model_run_as_written(fake_run, capsys):
    snippets = [s for s in heredocs(EXERCISES_MD.read_text()) if not any(k in s for k in NEEDS_A_MODEL)]
    assert len(snippets) >= 5                                   # exercises 1, 3, 4, 5 and 8
    for snippet in snippets:
        exec(compile(snippet, "EXERCISES.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    # exercise 1 on the fake irt.json (γ = 0.375 on the four levels): the cases of test_ex1_on_the_ladder_...
    assert "threshold 0.3  scale 1.7  cooperation share 0.25  cooperating D_q [1.0]" in out
    assert "threshold 0.5  scale 1.7  cooperation share 0.50  cooperating D_q [0.67, 1.0]" in out
    assert "threshold 0.7  scale 1.7  cooperation share 1.00" in out
    assert "threshold 0.7  scale 3.4  cooperation share 0.75  cooperating D_q [0.33, 0.67, 1.0]" in out
    assert "advantages with Eq. 5" in out and "M=3" in out               # exercises 3 and 4
    assert "agents_reduce max   cooperation share 0.50  cooperating D_q [0.67, 1.0]" in out   # exercise 5
    assert "G= 2  level 1: 100 %  level 4:   0 %" in out and "G= 8  level 1: 100 %  level 4: 100 %" in out


def test_one_liners_of_exercises_md_run_as_written(fake_run):
    commands = one_liners(EXERCISES_MD.read_text())
    assert len(commands) >= 2                                   # the column printer, exercise 8
    for command in commands:
        done = subprocess.run(sys.executable + command[len("python"):], shell=True, cwd=fake_run,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.strip()


def test_every_exercise_has_goal_place_run_time_look_and_question():
    """Issue 7's shape: each exercise says its goal, the one place, the command, its time, what to look at and
    a question; no placeholder survives an edit."""
    sections = re.split(r"\n## (?=\d+\. )", EXERCISES_MD.read_text())[1:]
    assert len(sections) >= 6
    for section in sections:
        title = section.splitlines()[0]
        for part in ("**Goal.**", "**The one place.**", "**Run.**", "**Time.**", "**Look at.**", "**Question"):
            assert part in section, f"exercise {title!r} has no {part}"
    assert not re.search(r"\bEX\d+_[A-Z]+\b", EXERCISES_MD.read_text()), "a placeholder is left in EXERCISES.md"


def test_ex10_the_strong_peer_rows_pair_a_model_the_script_trains_first_with_the_base(tmp_path):
    import table1
    todo = table1.plan(tmp_path / "ex10", ["grpo-strong-peer", "ilr-strong-peer"], [0], [0], "demo")
    assert [run.name for run, _ in todo] == ["strong-s1000", "grpo-strong-peer-s0", "ilr-strong-peer-s0"]
    strong = str(table1.strong_model(tmp_path / "ex10"))
    assert [cmd[cmd.index("--models") + 1] for _, cmd in todo[1:]] == [f"{strong},smollm2-135m"] * 2
    assert "--method" in todo[1][1] and "--method" not in todo[2][1]         # grpo: each alone; ilr: together
    assert table1.STRONG_OPTIONS[table1.STRONG_OPTIONS.index("--max_steps") + 1] == "36"
    assert callable(table1.interaction_stats)
