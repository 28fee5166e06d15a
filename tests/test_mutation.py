"""Tests written for mutants that survived `mutmut run` over grpo.py, irt.py and the reward/grading functions
(setup.cfg; scores and the reasons for the survivors left: tests/MUTATION.md). Each test names the mutation it
kills; they belong to the modules' own test files and live here only so that parallel branches merge cleanly."""
import hashlib
import math
import warnings
from fractions import Fraction

import pytest
import torch

import evaluate
import grpo
import ilr
import irt


# ---- grpo.perception_calibration: three agents, the clip active on both sides ----

def test_calibration_of_three_agents_clips_each_peer_term_to_plus_minus_half():
    """M = 3: bound 1/(M-1) = 0.5. Agent 1 is all-equal (0.5): a peer term of +-0.5 by sign. Agents 0 and 2
    have mean 0.5 and range 1: (1 - 0.5)/1 = +0.5 and (0 - 0.5)/1 = -0.5, at the bound.
    Agent 0, k=0: 1 + 0.5 + 0.5 = 2; k=1: 0 - 0.5 - 0.5 = -1. Agent 1: 0.5 + 0 + 0. Agent 2 mirrors agent 0.
    Kills: bound = M - 1 (gives 3.5), no lower clip (-0.5/eps)."""
    rewards = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    torch.testing.assert_close(grpo.perception_calibration(rewards),
                               torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 2.0]]))


# ---- irt: probabilities, modes, the ranking prompt and its parser, Spearman ----

def test_irt_probability_of_scalars_is_a_float_and_overflow_is_silent():
    assert isinstance(irt.irt_probability(0.5, 0.5), float)                 # not a 0-d array
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                      # exp overflow: P = 0, no warning
        assert irt.irt_probability(-1000.0, 1000.0) == 0.0


def test_question_mode_uses_the_threshold_it_is_given():
    assert irt.question_mode([0.6, 0.6], threshold=0.7) == "cooperation"
    assert irt.question_mode([0.6, 0.6]) == "competition"


def test_assign_modes_uses_the_scale_and_the_default_ratio():
    # D = 0.7, gamma = 0.38: P = sigma(3.4 * -0.32) = 0.252 < 0.3 (cooperation); with 1.7: 0.367 (competition)
    assert irt.assign_modes([0.7], [0.38, 0.38], threshold=0.3, scale=3.4) == ["cooperation"]
    assert irt.assign_modes([0.7], [0.38, 0.38], threshold=0.3) == ["competition"]
    draws = irt.assign_modes([0.5] * 4000, [0.5, 0.5], "random", rng=0)    # default cooperation_ratio 0.5
    assert draws.count("cooperation") / 4000 == pytest.approx(0.5, abs=0.03)


def test_ranking_prompt_numbers_from_one_states_n_and_cuts_long_questions_at_700_chars():
    exact, long = "a" * 700, "x" * 699 + " " + "y" * 10
    prompt = irt.ranking_prompt(["short?", exact, long])
    assert "Sort the following 3 math questions" in prompt and "Answer with the 3 question numbers" in prompt
    assert "Question 1: short?\n\nQuestion 2: " + exact + "\n\nQuestion 3: " + "x" * 699 + " ...\n" in prompt
    assert "Question 0" not in prompt and "Question 4" not in prompt


def test_parse_ranking_without_a_complete_reading_takes_the_longest():
    assert irt.parse_ranking("Ranking: 2, 1, 3. The hardest is question 3", 4) == ([2, 1, 3], False)


def test_scatter_group_ranks_gives_a_question_in_no_group_the_middle_rank():
    assert irt.scatter_group_ranks([[0]], [[0.0]], 2).tolist() == [0.0, 0.5]


def test_spearman_of_two_items_is_plus_or_minus_one():
    assert irt.spearman([1, 2], [1, 2]) == 1.0 and irt.spearman([1, 2], [2, 1]) == -1.0


def test_text_hash_is_the_first_16_hex_chars_of_the_utf8_sha256():     # the cache files' keys
    assert irt.text_hash("é?") == hashlib.sha256("é?".encode("utf-8")).hexdigest()[:16]


# ---- ilr's format term ----

def test_well_formed_code_needs_a_code_block_and_math_a_box():
    code, math = {"kind": "code"}, {"kind": "math"}
    assert ilr.well_formed("```python\ndef f(): pass\n```", code) and not ilr.well_formed("def f(): pass", code)
    assert not ilr.well_formed("```python\nx = 1\n```", math) and ilr.well_formed("\\boxed{1}", math)


# ---- evaluate: the list and number comparisons under grade_math, pass@k's argument check ----

def test_split_top_level_splits_only_at_top_level_commas():
    assert evaluate.split_top_level("a, b") == ["a", "b"]
    assert evaluate.split_top_level("(1,2),3") == ["(1,2)", "3"]
    assert evaluate.split_top_level("{(1,2),[3,4]}, 5 ,") == ["{(1,2),[3,4]}", "5"]


def test_lists_match_is_a_multiset_match():
    assert evaluate.lists_match(["-1", "2"], "2, -1") and evaluate.lists_match(["(1,2)", "3"], "3, (1,2)")
    assert not evaluate.lists_match(["-1", "2"], "2") and not evaluate.lists_match(["-1", "2"], "2, 5")
    assert not evaluate.lists_match(["2", "2"], "2, 3")


def test_numbers_equal_integers_exactly_others_within_1e_4_relative():
    assert evaluate.numbers_equal(Fraction(1, 3), 0.33333) and not evaluate.numbers_equal(12345, 12346)
    assert not evaluate.numbers_equal(0.1, 0.10002) and evaluate.numbers_equal(0.1, 0.100009)
    assert evaluate.numbers_equal(0, 1e-13)                                 # abs_tol near zero
    huge = Fraction(10 ** 400, 3)                                           # float() overflows: exact compare
    assert evaluate.numbers_equal(huge, huge) and not evaluate.numbers_equal(huge, huge + 1)


def test_pass_at_k_names_its_arguments_when_they_are_impossible():
    with pytest.raises(ValueError, match="need 0 <= c <= n and 1 <= k <= n, got n=3 c=4 k=1"):
        evaluate.pass_at_k(3, 4, 1)


# ---- grpo: the logged reward statistics, the all-equal group, the clipped loss and its KL term ----

def test_reward_stats_by_hand():
    """Groups [1,0,0,0], [1,1,1,1], [.5,.5,0,0]: mean reward 0.5; sample stds 0.5, 0, sqrt(0.25/3) = 0.2887;
    one zero-std group of three. One sample per group: std 0, every group zero-std."""
    stats = grpo.reward_stats(torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1], [0.5, 0.5, 0, 0]]))
    assert stats["reward"] == pytest.approx(0.5) and stats["frac_reward_zero_std"] == pytest.approx(1 / 3)
    assert stats["reward_std"] == pytest.approx((0.5 + 0 + (0.25 / 3) ** 0.5) / 3, abs=1e-6)
    assert grpo.reward_stats(torch.tensor([[1.0], [0.0]])) == {"reward": 0.5, "reward_std": 0.0,
                                                               "frac_reward_zero_std": 1.0}


def test_an_all_equal_group_has_exactly_zero_advantage_beside_another_group():
    # 0.9 three times: float32's mean is 6e-8 off, which / (std + 1e-4) would be a non-zero advantage
    advantages = grpo.group_advantages(torch.tensor([[0.9, 0.9, 0.9], [0.0, 1.0, 2.0]]))
    assert advantages[0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="scale must be 'std' or 'none', got 'max'"):
        grpo.group_advantages(torch.tensor([[0.0, 1.0]]), scale="max")


def test_grpo_loss_clips_at_the_default_epsilons_by_hand():
    """ratios 1.5 (A = +1) and 0.5 (A = -1), clip [0.8, 1.2]: max(-1.5, -1.2) = -1.2 and max(0.5, 0.8) = 0.8;
    the second token of each row is padding (its ratio 3 must not count): loss = (-1.2 + 0.8) / 2 = -0.2."""
    logps = torch.log(torch.tensor([[1.5, 3.0], [0.5, 3.0]]))
    loss, stats = grpo.grpo_loss(logps, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), torch.tensor([[1, 0], [1, 0]]))
    assert loss.item() == pytest.approx(-0.2) and stats["clip_ratio"] == 1.0 and stats["num_tokens"] == 2


def test_grpo_loss_k3_kl_term_by_hand():
    """logp = log 0.5, ref = log 0.25: delta = ref - logp = -log 2, kl = 0.5 + log 2 - 1 = 0.19315; A = 0, so
    loss = beta * kl = 0.5 * 0.19315."""
    logps = torch.log(torch.tensor([[0.5]]))
    loss, stats = grpo.grpo_loss(logps, None, torch.tensor([0.0]), torch.tensor([[1]]),
                                 ref_per_token_logps=torch.log(torch.tensor([[0.25]])), beta=0.5)
    kl = 0.5 + math.log(2) - 1
    assert stats["kl"] == pytest.approx(kl, rel=1e-5) and loss.item() == pytest.approx(0.5 * kl, rel=1e-5)
