"""Tests for irt.py: IRT probability, mode choice, ranking parser, rank aggregation, Spearman, self-ranking.

Hand-computed numbers; the model-facing parts run with llm.tiny_model() (random weights: its rankings are
garbage, which the parser must count, not crash on) or with a fake `llm.generate` that ranks perfectly.
"""

import json
import math
import re

import numpy as np
import pytest
import torch

import irt
import llm


# ---------------------------------------------------------------- IRT probability and modes

def test_irt_probability_hand_values():
    assert irt.irt_probability(0.5, 0.5) == 0.5
    assert irt.irt_probability(0.8, 0.3) == pytest.approx(1 / (1 + math.exp(-0.85)))  # 1.7 * 0.5 = 0.85
    assert irt.irt_probability(0.8, 0.3) == pytest.approx(0.700567, abs=1e-6)
    assert irt.irt_probability(0.0, 1.0, scale=1.0) == pytest.approx(1 / (1 + math.e))


def test_irt_probability_broadcasts_on_arrays_and_tensors():
    p = irt.irt_probability(np.array([[0.2], [0.6]]), np.array([0.2, 0.6]))  # [2, 1] x [2] -> [2, 2]
    assert p.shape == (2, 2) and p[0, 0] == p[1, 1] == 0.5 and p[1, 0] > 0.5 > p[0, 1]
    t = irt.irt_probability(torch.tensor([0.8]), 0.3)
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(1 / (1 + math.exp(-0.85)), abs=1e-6)


def test_threshold_decision_is_difficulty_above_ability_whatever_the_scale():
    rng = np.random.default_rng(0)
    for ability, difficulty in rng.random((50, 2)):
        expected = "cooperation" if difficulty > ability else "competition"
        for scale in (0.5, 1.0, 1.7, 5.0):
            assert irt.choose_mode(irt.irt_probability(ability, difficulty, scale)) == expected


def test_choose_mode_boundary_half_is_competition():
    assert irt.choose_mode(0.5) == "competition"
    assert irt.choose_mode(0.4999999) == "cooperation"
    assert irt.choose_mode(0.7, threshold=0.8) == "cooperation"


def test_question_mode_reduces_the_agents_probabilities():
    probabilities = [0.4, 0.7]  # mean 0.55, min 0.4, max 0.7
    assert irt.question_mode(probabilities) == "competition"
    assert irt.question_mode(probabilities, agents_reduce="min") == "cooperation"
    assert irt.question_mode(probabilities, agents_reduce="max") == "competition"
    assert irt.question_mode([0.2, 0.45], agents_reduce="max") == "cooperation"
    assert irt.question_mode([0.5]) == "competition"


def test_assign_modes_dynamic_by_hand():
    # D = 0.45: P = 1/(1+e^{0.255}) = 0.4366 (gamma 0.3), 1/(1+e^{-0.085}) = 0.5212 (gamma 0.5); mean 0.4789
    # D = 0.35: P = 1/(1+e^{0.085}) = 0.4788, 1/(1+e^{-0.255}) = 0.5634; mean 0.5211
    p = irt.irt_probability(np.array([0.3, 0.5]), 0.45)
    assert p.round(4).tolist() == [0.4366, 0.5212]
    assert irt.assign_modes([0.45, 0.35], [0.3, 0.5]) == ["cooperation", "competition"]
    # the same with "min": the weaker agent decides, both questions are hard for it
    assert irt.assign_modes([0.45, 0.35], [0.3, 0.5], agents_reduce="min") == ["cooperation", "cooperation"]


def test_assign_modes_fixed_and_random_ablations():
    difficulties, abilities = np.linspace(0, 1, 1000), [0.5, 0.5]
    assert set(irt.assign_modes(difficulties, abilities, "cooperation")) == {"cooperation"}
    assert set(irt.assign_modes(difficulties, abilities, "competition")) == {"competition"}
    assert set(irt.assign_modes(difficulties, abilities, "random", cooperation_ratio=0.0, rng=0)) == {"competition"}
    assert set(irt.assign_modes(difficulties, abilities, "random", cooperation_ratio=1.0, rng=0)) == {"cooperation"}
    half = irt.assign_modes(difficulties, abilities, "random", cooperation_ratio=0.5, rng=0)
    assert 0.45 < half.count("cooperation") / 1000 < 0.55
    assert half == irt.assign_modes(difficulties, abilities, "random", cooperation_ratio=0.5, rng=0)  # seeded
    assert irt.assign_modes([], abilities, "dynamic") == []
    with pytest.raises(ValueError, match="interaction"):
        irt.assign_modes(difficulties, abilities, "debate")


# ---------------------------------------------------------------- self-ranking: pure parts

@pytest.mark.parametrize("text, n, order, valid", [
    ("3,1,2", 3, [3, 1, 2], True),
    ("[3, 1, 2]", 3, [3, 1, 2], True),
    ("3 > 1 > 2", 3, [3, 1, 2], True),
    ("Q3 > Q1 > Q2", 3, [3, 1, 2], True),
    ("Question 3, Question 1, Question 2", 3, [3, 1, 2], True),
    ("From easiest to hardest: 2, 4, 1, 3.", 4, [2, 4, 1, 3], True),
    ("1. Question 3\n2. Question 1\n3. Question 2", 3, [3, 1, 2], True),
    ("1) Q2 (easy)\n2) Q1\n3) Q3 (hard)", 3, [2, 1, 3], True),
    ("1. 3\n2. 1\n3. 2", 3, [3, 1, 2], True),
    ("1. 3 pencils\n2. 9 more pencils\n3. 2 more stickers\n4. 12 stickers", 4, [], False),  # counts, not ids
    ("1. 1.\n2. 2.\n3. 3.", 3, [1, 2, 3], True),  # the numbering echoed: valid, counted as "identity"
    ("The easiest is question 2, then question 3, and the hardest is question 1.", 3, [2, 3, 1], True),
    ("2,\n1,\n3", 3, [2, 1, 3], True),
    ("#2, #1, #3", 3, [2, 1, 3], True),
    ("2 then 1 then 3", 3, [2, 1, 3], True),
    ("The order is 4,3,2,1 because 10 > 5", 4, [4, 3, 2, 1], True),
    ("3,1,3,2", 4, [3, 1, 2], False),  # duplicate dropped, 4 missing
    ("5, 2, 0, 1", 3, [2, 1], False),  # out-of-range 5 and 0 dropped
    ("Question 2", 2, [2], False),  # prose mention of one id: partial
    ("Question 1: 6 math books\nQuestion 2: 6 math books", 4, [], False),  # the prompt echoed
    ("$\\frac{1}{a_1} + \\frac{1}{a_2} = 1 + 2 = 3$", 3, [], False),
    ("dot((1,7),red+5bp);", 4, [], False),
    ("A parabola has vertex $(4,2)$ and passes through \\((2,3)\\).", 4, [], False),  # numbers in LaTeX math
    ("I cannot rank these questions.", 4, [], False),
    ("", 3, [], False),
    ("\x00\ufffd}}{{ 999999999999999999999", 3, [], False),
])
def test_parse_ranking_formats(text, n, order, valid):
    assert irt.parse_ranking(text, n) == (order, valid)


def test_parse_ranking_never_raises_on_non_text():
    assert irt.parse_ranking(None, 3) == ([], False)
    assert irt.parse_ranking(b"1, 2", 2) == ([], False)


def test_ranking_status_counts_three_outcomes():
    assert [irt.ranking_status(o, 3) for o in ([1, 2, 3], [2], [])] == ["valid", "partial", "invalid"]


def test_split_into_groups_covers_every_question_once_and_last_group_is_smaller():
    groups = irt.split_into_groups(10, 4, seed=3)
    assert [len(g) for g in groups] == [4, 4, 2]
    assert sorted(i for g in groups for i in g) == list(range(10))
    assert groups == irt.split_into_groups(10, 4, seed=3) != irt.split_into_groups(10, 4, seed=4)
    assert irt.split_into_groups(0, 4, seed=0) == []


def test_group_ranks_by_hand():
    assert irt.group_ranks([3, 1, 4, 2], 4) == pytest.approx([1 / 3, 1.0, 0.0, 2 / 3])
    assert irt.group_ranks([2, 1], 2) == [1.0, 0.0]
    # partial: 4 first, 1 second; 2 and 3 share positions 2 and 3 -> 2.5 / 3
    assert irt.group_ranks([4, 1], 4) == pytest.approx([1 / 3, 2.5 / 3, 2.5 / 3, 0.0])
    assert irt.group_ranks([], 3) == [0.5, 0.5, 0.5]  # invalid: neutral
    assert irt.group_ranks([], 1) == [0.5]  # a group of one


def test_ranks_to_difficulty_by_hand():
    # 5 questions, one agent, two splits. Split 1: groups [3, 0] (q3 easier) and [4, 1, 2] (order 2, 4, 1 ->
    # q1 hardest, q2 easiest). Split 2: groups [1, 2] (q1 easier) and [0, 4, 3] with an invalid answer (0.5).
    split1 = irt.scatter_group_ranks([[3, 0], [4, 1, 2]], [irt.group_ranks([1], 2), irt.group_ranks([3, 1, 2], 3)], 5)
    split2 = irt.scatter_group_ranks([[1, 2], [0, 4, 3]], [irt.group_ranks([1, 2], 2), irt.group_ranks([], 3)], 5)
    assert split1.tolist() == [1.0, 1.0, 0.0, 0.0, 0.5]
    assert split2.tolist() == [0.5, 0.0, 1.0, 0.5, 0.5]
    assert irt.aggregate_difficulty([split1, split2]).tolist() == [0.75, 0.5, 0.5, 0.25, 0.5]
    # a second agent that ranks everything the other way round: averaged over agents -> 0.5 everywhere
    assert irt.aggregate_difficulty([[split1, split2], [1 - split1, 1 - split2]]).tolist() == [0.5] * 5


# ---------------------------------------------------------------- Spearman

def test_spearman_by_hand_with_ties():
    assert irt.average_ranks([3.0, 1.0, 2.0, 2.0]).tolist() == [4.0, 1.0, 2.5, 2.5]
    # x ranks [1, 2.5, 2.5, 4], y ranks [1, 3, 2, 4]: deviations [-1.5, 0, 0, 1.5] and [-1.5, .5, -.5, 1.5];
    # sum of products 4.5, sums of squares 4.5 and 5 -> 4.5 / sqrt(22.5) = sqrt(0.9)
    assert irt.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert irt.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(1 - 6 * 4 / (5 * 24))  # 0.8
    assert irt.spearman([1, 2, 3], [9, 4, 1]) == pytest.approx(-1.0)
    assert math.isnan(irt.spearman([1, 1, 1], [1, 2, 3]))


# ---------------------------------------------------------------- self-ranking with a model

QUESTIONS = [f"Question about item {k}: compute {k} + {k}." for k in range(10)]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(2)
    return llm.tiny_model()


def test_self_rank_with_the_tiny_model_counts_garbage_and_hits_the_cache(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    kwargs = dict(group_size=4, num_splits=2, seed=0, max_new_tokens=8, cache_dir=tmp_path, progress=False)
    difficulty, stats = irt.estimate_difficulty([tiny], QUESTIONS, **kwargs)
    assert difficulty.shape == (10,) and ((0 <= difficulty) & (difficulty <= 1)).all()
    # 10 questions in groups of 4: 3 groups (4, 4, 2) per split, 2 splits -> 6 ranked groups, all generated
    assert stats["valid"] + stats["partial"] + stats["invalid"] == 6
    assert stats["generated"] == 6 and stats["cached"] == 0
    assert stats["invalid"] > 0 and 0.0 <= stats["valid_share"] < 1.0  # random weights: mostly no ranking

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(llm, "generate", no_generation)
    again, stats_again = irt.estimate_difficulty([tiny], QUESTIONS, **kwargs)
    assert again.tolist() == difficulty.tolist()
    assert stats_again["cached"] == 6 and stats_again["generated"] == 0
    assert (tmp_path / "self_rank" / f"{irt.model_identity(model)}.json").exists()


def test_model_identity_changes_when_the_weights_change(tiny):
    model, _ = tiny
    before = irt.model_identity(model)
    assert before.startswith("tiny-0") and irt.model_identity(model) == before
    first = next(model.parameters())
    original = first[0, 0].item()
    with torch.no_grad():
        first[0, 0] = original + 1.0  # one "training step"
        after = irt.model_identity(model)
        first[0, 0] = original  # restore the shared fixture
    assert after != before and irt.model_identity(model) == before


def test_a_group_of_one_is_not_asked_and_gets_half(tiny, monkeypatch):
    calls = []

    def fake_generate(model, tokenizer, prompts, **kwargs):
        calls.append(prompts)
        return llm.Generation(texts=[["2, 1"]] * len(prompts), prompt_ids=[], completion_ids=[], finished=[])

    monkeypatch.setattr(llm, "generate", fake_generate)
    ranks, counts = irt.self_rank(*tiny, QUESTIONS[:3], group_size=2, num_splits=1, cache_dir=None, progress=False)
    assert len(calls) == 1 and len(calls[0]) == 1  # one call per split; only the group of two is prompted
    assert counts["single"] == 1 and counts["valid"] == 1
    assert sorted(ranks[0].tolist()) == [0.0, 0.5, 1.0]


def test_drop_identity_turns_an_echoed_order_into_no_information(tiny, monkeypatch):
    def echo_generate(model, tokenizer, prompts, **kwargs):  # "1. 1.\n2. 2. ..." as SmolLM2-135M writes
        texts = [["\n".join(f"{k}. {k}." for k in range(1, p.count("Question ") + 1))] for p in prompts]
        return llm.Generation(texts=texts, prompt_ids=[], completion_ids=[], finished=[])

    monkeypatch.setattr(llm, "generate", echo_generate)
    kwargs = dict(group_size=4, num_splits=1, cache_dir=None, progress=False)
    ranks, counts = irt.self_rank(*tiny, QUESTIONS[:4], **kwargs)
    assert counts["valid"] == counts["identity"] == 1
    assert sorted(ranks[0].tolist()) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    ranks, counts = irt.self_rank(*tiny, QUESTIONS[:4], drop_identity=True, **kwargs)
    assert counts["valid"] == counts["identity"] == 1 and ranks[0].tolist() == [0.5] * 4


def perfect_ranker(true_difficulty):
    """A fake llm.generate that reads "Question k: ... item j" from each prompt and ranks by true_difficulty[j]."""
    def fake_generate(model, tokenizer, prompts, **kwargs):
        texts = []
        for prompt in prompts:
            items = [int(j) for j in re.findall(r"^Question \d+: Question about item (\d+)", prompt, re.MULTILINE)]
            order = sorted(range(1, len(items) + 1), key=lambda k: true_difficulty[items[k - 1]])
            texts.append([f"Easiest to hardest: {', '.join(map(str, order))}"])
        return llm.Generation(texts=texts, prompt_ids=[], completion_ids=[], finished=[])
    return fake_generate


def test_a_perfect_ranker_recovers_the_known_order_exactly(tiny, monkeypatch):
    true_difficulty = np.random.default_rng(1).permutation(10)  # item j has difficulty true_difficulty[j]
    monkeypatch.setattr(llm, "generate", perfect_ranker(true_difficulty))
    # one group holding every question: the normalised ranks are the true order, in every split
    difficulty, stats = irt.estimate_difficulty([tiny], QUESTIONS, group_size=10, num_splits=2, cache_dir=None,
                                                progress=False)
    assert stats["valid"] == 2 and stats["valid_share"] == 1.0
    assert irt.spearman(difficulty, true_difficulty) == 1.0
    assert difficulty.tolist() == pytest.approx((true_difficulty / 9).tolist())
    # groups of 4 with 8 splits: only within-group comparisons, so the order is close but not exact
    difficulty, _ = irt.estimate_difficulty([tiny], QUESTIONS, group_size=4, num_splits=8, cache_dir=None,
                                            progress=False)
    assert irt.spearman(difficulty, true_difficulty) > 0.8


# ---------------------------------------------------------------- ability

def test_ability_is_greedy_accuracy_and_is_cached(tiny, tmp_path, monkeypatch):
    records = [{"question": f"What is {k} + {k}?", "answer": str(2 * k)} for k in range(4)]
    calls = []

    def fake_generate(model, tokenizer, prompts, **kwargs):
        calls.append(kwargs["temperature"])
        return llm.Generation(texts=[["The answer is 0."] if "0 + 0" in p or "1 + 1" in p else ["no idea"]
                                     for p in prompts], prompt_ids=[], completion_ids=[], finished=[])

    monkeypatch.setattr(llm, "generate", fake_generate)
    grade = lambda completion, record: float(completion.endswith("0."))  # noqa: E731
    kwargs = dict(grade_fn=grade, prompt_fn=lambda r: r["question"], cache_dir=tmp_path, progress=False)
    assert irt.greedy_correctness(*tiny, records, **kwargs).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert calls == [0.0]  # one greedy call
    assert irt.estimate_ability(*tiny, records, **kwargs) == 0.5
    assert len(calls) == 1  # the second call was answered by the cache
    more = records + [{"question": f"What is {k} + {k}?", "answer": str(2 * k)} for k in range(4, 9)]
    assert irt.greedy_correctness(*tiny, more, save_every=2, **kwargs).sum() == 2.0
    assert len(calls) == 1 + 3  # only the 5 new questions are generated, 2 at a time


# ---------------------------------------------------------------- validation command

def test_validate_command_runs_with_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "report.json"
    irt.main(["validate", "--model", "tiny", "--benchmark", "synthetic", "--limit", "9", "--num-splits", "1",
              "--ability", "0.3", "--rank-max-new-tokens", "4", "--cache-dir", str(tmp_path), "--output", str(out)])
    printed = capsys.readouterr().out
    assert "spearman_level" in printed and "cooperation_share" in printed and out.exists()


def test_parse_config_reads_flags_and_types():
    cfg = irt.parse_config(["--limit", "7", "--failure-rate", "--ability", "0.25", "--group-size", "5"])
    assert (cfg.limit, cfg.failure_rate, cfg.ability, cfg.group_size, cfg.num_splits) == (7, True, 0.25, 5, 3)


# ---------------------------------------------------------------- difficulty = the known level (issue 13)

def test_level_difficulty_is_min_max_normalised_over_the_questions():
    assert irt.level_difficulty([2, 5, 3, 5]).tolist() == [0.0, 1.0, 1 / 3, 1.0]
    assert irt.level_difficulty([3, 3, 3]).tolist() == [0.5, 0.5, 0.5]  # no spread, no information
    with pytest.raises(ValueError, match="every question needs a known level"):
        irt.level_difficulty([1, None, 3])


def test_a_known_level_order_gives_the_right_modes_by_hand():
    # ladder levels 1..5 -> D = 0, 0.25, 0.5, 0.75, 1; agents of ability 0.3 and 0.5 (held-out accuracies).
    # P = 1/(1+exp(-1.7 (gamma - D))), mean over the two agents:
    #   D = 0:    sigma(0.51) = 0.6248, sigma(0.85) = 0.7006 -> 0.6627  competition
    #   D = 0.25: sigma(0.085) = 0.5212, sigma(0.425) = 0.6047 -> 0.5630 competition
    #   D = 0.5:  sigma(-0.34) = 0.4158, sigma(0) = 0.5 -> 0.4579          cooperation
    #   D = 0.75, 1: below 0.5                                              cooperation
    difficulty = irt.level_difficulty([1, 2, 3, 4, 5])
    p = irt.irt_probability(np.array([0.3, 0.5])[None, :], difficulty[:, None]).mean(axis=1)
    assert p[:3].round(4).tolist() == [0.6627, 0.563, 0.4579]
    modes = irt.assign_modes(difficulty, [0.3, 0.5])
    assert modes == ["competition", "competition", "cooperation", "cooperation", "cooperation"]
    # a stronger pair (0.7, 0.9): only the hardest level is cooperative.
    # D = 0.75: sigma(-0.085) = 0.4788, sigma(0.255) = 0.5634 -> 0.5211 competition;
    # D = 1:    sigma(-0.51) = 0.3752, sigma(-0.17) = 0.4576 -> 0.4164 cooperation
    assert irt.assign_modes(difficulty, [0.7, 0.9]) == ["competition"] * 4 + ["cooperation"]
    assert irt.cooperation_share_by_level(modes, [1, 2, 3, 4, 5], all_levels=[1, 2, 3, 4, 5, 6]) == {
        1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: None}


def test_validate_on_the_ladder_reports_both_difficulties_by_level(tmp_path, capsys):
    out = tmp_path / "report.json"
    irt.main(["validate", "--model", "tiny", "--benchmark", "ladder", "--limit", "10", "--num-splits", "1",
              "--ability", "0.3", "--rank-max-new-tokens", "4", "--cache-dir", str(tmp_path), "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["num_questions"] == 10 and set(report["mean_difficulty_by_level"]) == {"1", "2", "3", "4", "5"}
    # gamma 0.3 with D = level: levels 1-2 (D 0, 0.25) compete, 3-5 cooperate; 2 questions per level
    assert report["cooperation_by_level"]["level"] == {"1": 0.0, "2": 0.0, "3": 1.0, "4": 1.0, "5": 1.0}
    assert report["cooperation_share_level"] == 0.6
    assert set(report["cooperation_by_level"]["self_rank"]) == {"1", "2", "3", "4", "5"}
