"""Tests for evaluate.py: answer extraction, equivalence, code grading, pass@k, oracle CLI runs, tiny model.

Fast: no real model (llm.tiny_model only), tiny data files written in tmp_path.
"""

import json
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluate  # noqa: E402
from evaluate import (Grade, answers_match, extract_answer, extract_boxed, extract_code, grade_code,  # noqa: E402
                      grade_math, grade_record, normalize_answer, parse_number, pass_at_k, reward)

# ------------------------------------------------------------------------------------------ answer extraction


def test_extract_boxed_keeps_nested_braces():
    assert extract_boxed(r"so \boxed{\frac{\sqrt{2}}{2}} done") == r"\frac{\sqrt{2}}{2}"


def test_extract_boxed_takes_the_last_box_of_several():
    assert extract_boxed(r"\boxed{1} no wait \boxed{2}, final: \boxed{3}") == "3"
    assert extract_boxed(r"\boxed{1} then \fbox{2}") == "2"
    assert extract_boxed(r"\fbox{9} then \boxed{4}") == "4"


def test_extract_boxed_reads_the_other_box_spellings():
    assert extract_boxed(r"the answer is \boxed 7.") == "7"
    assert extract_boxed(r"\framebox{204} minutes") == "204"
    assert extract_boxed(r"\framebox[2cm][c]{5}") == "5"
    assert extract_boxed(r"\boxed {12}") == "12"


def test_extract_boxed_without_a_complete_box_gives_none():
    assert extract_boxed("no box at all") is None
    assert extract_boxed(r"\boxed{\frac{1}{2}") is None          # unbalanced
    assert extract_boxed(r"\boxedx") is None                     # not the macro


@pytest.mark.parametrize("text", [r"\boxed{}", r"\boxed{ }", r"\framebox{5}", r"\fbox{2}", r"\boxed 7.", r"\boxed{4}",
                                  r"\boxed{\frac{1}{2}", r"\boxedx", "no box", r"\boxed{1} then \boxed{}"])
def test_the_format_reward_and_the_grader_read_boxes_alike(text):
    """Issue 14: `\boxed{}` earned the format reward with no answer, `\framebox{5}` was correct but unformatted."""
    import ilr
    assert ilr.well_formed(text, {"kind": "math"}) == (extract_answer(text)[1] == "boxed")


def test_one_definition_of_the_boxed_answer():
    import data
    assert extract_boxed is data.last_boxed


def test_fallbacks_in_order_box_then_hashes_then_answer_is():
    assert extract_answer("blah #### 18") == ("18", "hashes")
    assert extract_answer("Thus, the final answer is: 42.") == ("42", "answer_is")
    assert extract_answer(r"The answer is 5. \boxed{6}") == ("6", "boxed")


def test_last_number_fallback_only_for_plain_number_benchmarks():
    text = "First 3 apples, then 4 more, so 7 apples in total."
    assert extract_answer(text, "gsm8k") == ("7", "last_number")
    assert extract_answer(text, "synthetic") == ("7", "last_number")
    assert extract_answer(text, "math500") == (None, "none")
    assert extract_answer(text, "aime24") == (None, "none")
    assert extract_answer(text) == (None, "none")


def test_answer_is_strips_full_stops_and_dollars_but_not_a_final_capital_x():
    """Mutation extract_answer 31: rstrip("XX.XX") also ate a final X ('2X' -> '2', 'X' -> no answer)."""
    assert extract_answer("So the answer is 2X.") == ("2X", "answer_is")
    assert extract_answer("The answer is X.") == ("X", "answer_is")
    assert extract_answer("The answer is $12$.") == ("12", "answer_is")


def test_last_number_keeps_a_leading_decimal_point():
    """Mutation extract_answer 39: lstrip(".") read '.5' as 5."""
    assert extract_answer("Each cup holds .5 liters", "gsm8k") == (".5", "last_number")
    assert extract_answer("It costs 1,234.", "gsm8k") == ("1234", "last_number")


# ---------------------------------------------------------------------------------------------- equivalence

@pytest.mark.parametrize("gold, prediction", [
    ("1/2", r"\frac{1}{2}"), (r"\frac{1}{2}", "0.5"), ("0.5", "1/2"), (r"\frac12", r"\dfrac{1}{2}"),
    (r"\frac{1}{2}", r"\tfrac12"), ("025", "25"), ("25", "025"), ("27.0", "27"), ("1000", "1,000"),
    ("1000", r"1{,}000"), ("1000", r"1\,000"), (r"\frac{\sqrt{2}}{2}", r"\frac{\sqrt2}{2}"), ("18", r"\$18"),
    ("8", r"8\%"), (r"8 \%", "8"), ("10", r"10 \text{ cm}"), ("10", r"10\text{ cm}^2"), ("12", "12 apples"),
    ("90", r"90^\circ"), (r"90^{\circ}", "90"), (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})"),
    ("x^2+2x", "x(x+2)"), (r"\text{Monday}", "Monday"), ("2 n", "2n"), ("4.25", "4.250"), ("-3", "-3.0"),
])
def test_equivalent_forms_match(gold, prediction):
    assert answers_match(gold, prediction)


@pytest.mark.parametrize("gold, prediction", [
    ("12", "13"), ("12345", "12346"), ("1/2", "0.51"), ("2", r"2\pi"), ("2", "2 pi"), ("5", "5x"),
    (r"\frac{1}{2}", r"\frac{2}{1}"), ("(1,2)", "(2,1)"), ("10", ""),
])
def test_different_answers_do_not_match(gold, prediction):
    assert not answers_match(gold, prediction)


# Tests for the mutants of the grading chain that survived mutmut's run (tests/MUTATION.md, third run): each
# names the mutants it kills; the values are worked out by hand from the rules of normalize_answer.

def test_normalize_removes_dollars_percents_degrees_and_spacing_inside_a_list():
    """A list is not a number with a unit, so _strip_units cannot clean up after a missed or replaced symbol.
    Mutations normalize_answer 22, 23 ($), 25, 26, 27 (% and \\%), 58, 59, 60 (degrees), 78 ({,}), 80, 81 (~)."""
    assert normalize_answer("$x+1$") == "x+1"
    assert normalize_answer(r"10\%, 20\%") == "10, 20"
    assert normalize_answer("10%, 20%") == "10, 20"
    assert normalize_answer(r"30^\circ, 60^{\circ}, 90°") == "30, 60, 90"
    assert normalize_answer("1{,}000") == "1000"
    assert normalize_answer("(1,~2)") == "(1, 2)"
    assert normalize_answer(r"5~\text{cm}") == "5"


def test_normalize_reads_latex_command_names_case_sensitively():
    """Mutations normalize_answer 48 (\\Big, \\Bigg missing from the list), 36 (the look-ahead after \\dfrac
    lower-case only: a longer command name starting with \\dfrac and a capital was rewritten), 35, 37, 47, 49."""
    assert normalize_answer(r"\Big(1, 2\Bigg)") == "(1, 2)"
    assert normalize_answer(r"\dfracA") == r"\dfracA"
    assert normalize_answer(r"\tfrac{1}{2}") == normalize_answer(r"\dfrac{1}{2}") == r"\frac{1}{2}"


def test_normalize_drops_a_final_full_stop_also_inside_a_text_wrapper():
    """Mutation normalize_answer 85 (rstrip("XX.XX") also ate a final X). The wrapper case was a bug found through
    grade_math 44: '\\text{Monday.}' normalised to 'Monday.' and did not match 'Monday'."""
    assert normalize_answer("2X.") == "2X"
    assert normalize_answer(r"\text{C.}") == "C" and normalize_answer(r"\text{2X.}") == "2X"
    assert normalize_answer(r"\text{ \textbf{Monday.} }.") == "Monday"
    assert answers_match("Monday", r"\text{Monday.}")


def test_normalize_unwraps_only_a_text_group_that_spans_the_whole_answer():
    """Mutations normalize_answer 94, 110 (two groups read as one wrapper) and 102 (an unbalanced first group
    reached braced(...)[1] on None: TypeError)."""
    assert normalize_answer(r"\text{a} + \text{b}") == r"\text{a} + \text{b}"
    assert normalize_answer(r"\text{{a}") == r"\text{{a}"


def test_a_number_times_a_math_word_is_kept_and_a_text_group_is_a_unit_whatever_it_holds():
    """Mutations _strip_units 14 ([a-za-z]: a capitalised 'Pi' was not seen), 25 (commands replaced by 'XX XX' glued
    'xx' onto 'pi'), 22, 23, 24 (command names inside the unit group not removed, or only those of one case).
    A command inside \\text{}/\\mathrm{} is no math word: 2\\mathrm{\\pi} is 2 with a unit, as math-verify reads it."""
    assert normalize_answer("2 Pi") == "2 Pi"
    assert normalize_answer(r"2pi\text{ rad}") == r"2pi\text{ rad}"
    assert normalize_answer(r"2\mathrm{\pi}") == normalize_answer(r"2\text{\Pi}") == "2"
    assert evaluate.math_verify_equal("2", r"2\mathrm{\pi}")
    assert normalize_answer(r"3\text{ cm}") == normalize_answer(r"3\mathrm{cm}") == "3"


def test_parse_number_ignores_spaces_and_reads_scientific_notation():
    """Mutations parse_number 6, 7 (spaces kept), 18 (float(None): TypeError) and 46, 48, 49 (the sign)."""
    assert parse_number(r"\frac{3}{ 4}") == Fraction(3, 4)
    assert parse_number("- 5") == Fraction(-5)
    assert parse_number("1 / 2") == Fraction(1, 2)
    assert parse_number(r"- \frac{3}{ 6}") == parse_number("-3/6") == Fraction(-1, 2)
    value = parse_number("2.5e-3")
    assert isinstance(value, float) and value == 0.0025


def test_no_answer_grades_say_why():
    """Mutations grade_math 7, 11, 15, 16 (empty completion) and 25, 29, 33, 34 (no answer found): the detail."""
    assert grade_math("   ", "7") == Grade(False, None, "no_answer", "empty completion")
    assert grade_math("I don't know.", "7") == Grade(False, None, "no_answer",
                                                      "no \\boxed{}, '####' or 'the answer is'")


def test_answers_replace_the_gold_and_multiple_is_off_by_default():
    """Mutations grade_math 36 (answers ignored for gold) and 1 (multiple=True by default). Without `multiple` the
    gold '3, 4' is one answer, compared whole (math-verify, which strips no units from the items); with it, item by
    item, each through normalize_answer."""
    assert grade_math(r"\boxed{2}", "1", answers=["2"]) == Grade(True, "2", "passed", "boxed")
    apples = r"\boxed{4 apples, 3 apples}"
    assert not grade_math(apples, "3, 4").correct
    assert grade_math(apples, "3, 4", multiple=True).correct


def test_list_answers_pass_item_by_item_or_as_the_whole_list():
    """Several golds: item by item (lists_match) OR the joined list whole (answers_match). The apples pass only item
    by item, the set '\\{3, 4\\}' (one item) only whole. Mutations grade_math 53, 55 (and / no item match), 58,
    59, 63 (the whole-list match given None or 'XX, XX') and 60, 61, 62 (its call raising: grader_error)."""
    assert grade_math(r"\boxed{4 apples, 3 apples}", "", answers=["3", "4"]).correct
    assert grade_math(r"\boxed{\{3, 4\}}", "", answers=["3", "4"]) == Grade(True, r"\{3, 4\}", "passed", "boxed")
    assert grade_math(r"\boxed{\{3, 5\}}", "", answers=["3", "4"]) == Grade(False, r"\{3, 5\}", "wrong", "boxed")


def test_an_unexpected_error_is_incorrect_with_its_type_and_message_cut_to_300_chars(monkeypatch):
    """Mutations grade_math 78-89: every field of the grader_error grade."""
    assert grade_math(r"\boxed{1}", "1", answers=5) == Grade(False, None, "grader_error",
                                                               "TypeError: 'int' object is not iterable")

    def broken(completion, benchmark=None):
        raise RuntimeError("x" * 400)
    monkeypatch.setattr(evaluate, "extract_answer", broken)
    grade = grade_math(r"\boxed{1}", "1")
    assert grade == Grade(False, None, "grader_error", "RuntimeError: " + "x" * 286)
    assert len(grade.detail) == 300


def test_grade_math_reads_the_last_box_and_reports_how():
    grade = grade_math(r"maybe \boxed{3}... no: \boxed{\dfrac{1}{2}}", "0.5")
    assert grade.correct and grade.extracted == r"\dfrac{1}{2}" and grade.detail == "boxed"
    assert not grade_math(r"\boxed{0.5} hmm, actually \boxed{3}", "0.5").correct


def test_no_answer_is_incorrect_with_a_reason():
    for completion in ["I am not sure.", "", "   ", None, 42]:
        grade = grade_math(completion, "7")
        assert (grade.correct, grade.extracted, grade.reason) == (False, None, "no_answer")


def test_wrong_answer_has_reason_wrong():
    assert grade_math(r"\boxed{8}", "7").reason == "wrong"


def test_gsm8k_solution_format_is_graded():
    assert grade_math("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18", "gsm8k").correct
    assert grade_math("So she earns $1,018 in total.", "1018", "gsm8k").correct


def test_aime_and_amc_answers_compare_as_numbers():
    assert grade_math(r"\boxed{25}", "025", "aime24").correct
    assert grade_math(r"\boxed{27}", "27.0", "amc23").correct
    assert not grade_math(r"\boxed{26}", "27.0", "amc23").correct


def test_olympiadbench_list_answers_match_in_any_order():
    record = {"kind": "math", "answer": "-2, -1, 1, 2",
              "meta": {"benchmark": "olympiadbench", "answers": ["-2,-1,1,2"], "multiple": True}}
    assert grade_record(r"\boxed{2, 1, -1, -2}", record).correct
    assert not grade_record(r"\boxed{2, 1, -1}", record).correct
    assert not grade_record(r"\boxed{2, 1, -1, 3}", record).correct
    several = {"kind": "math", "answer": r"\frac{32}{9}, \frac{1}{2}",
               "meta": {"benchmark": "olympiadbench", "answers": [r"\frac{32}{9}", r"\frac{1}{2}"],
                        "multiple": True}}
    assert grade_record(r"\boxed{0.5, \frac{32}{9}}", several).correct
    tuples = {"kind": "math", "answer": "(1,1), (3,2)",
              "meta": {"benchmark": "olympiadbench", "answers": ["(1,1), (3,2)"], "multiple": True}}
    assert grade_record(r"\boxed{(3,2), (1,1)}", tuples).correct
    assert not grade_record(r"\boxed{(2,3), (1,1)}", tuples).correct


def test_pathological_answers_return_quickly_and_never_raise():
    start = time.monotonic()
    for completion in [r"\boxed{9^{9^{9^{9}}}}", r"\boxed{" + "(" * 5000 + "}", "\\boxed{" + "x" * 100_000 + "}",
                       r"\boxed{\frac{1}{0}}", "\\boxed{\x00}"]:
        grade = grade_math(completion, "1")
        assert grade.correct is False
    assert time.monotonic() - start < 30


def test_grading_from_a_worker_thread_does_not_raise():
    """math-verify's timeouts use signal.alarm (main thread only); other threads must still be graded."""
    grades = []
    worker = threading.Thread(target=lambda: grades.extend([grade_math(r"\boxed{\frac{1}{2}}", "0.5"),
                                                            grade_math(r"\boxed{x+1}", "1+x"),
                                                            grade_math(r"\boxed{3}", "4")]))
    worker.start()
    worker.join(timeout=120)
    assert [g.correct for g in grades] == [True, True, False]


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_grading_helper_process_ends_when_its_parent_is_killed():
    """A parent that dies without atexit (SIGKILL, the OOM killer, os._exit) must not leave its math-verify helper
    waiting for work for ever (a mutation-testing run left 110 of them, ~200 MB each)."""
    import subprocess
    program = ("import os, threading, evaluate\n"
               "t = threading.Thread(target=evaluate.grade_math, args=(r'\\boxed{x+1}', '1+x')); t.start(); t.join()\n"
               "print(*evaluate._helper._processes, flush=True)\n"
               "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", program], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=60)   # the helper holds the pipe
    helpers = [int(pid) for pid in out.stdout.split()]
    assert helpers, out.stderr[-2000:]
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in helpers), f"helper {helpers} outlived its parent"


# ---------------------------------------------------------------------------------------------------- code

MBPP_RECORD = {"id": "2", "kind": "code", "question": "Write a function to add two numbers.",
               "answer": "def add(a, b):\n    return a + b",
               "meta": {"tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
                        "setup_code": "", "entry_point": "add", "benchmark": "mbpp", "task_id": 2}}


def test_extract_code_prefers_the_block_defining_the_entry_point():
    completion = "```python\nprint(add(1, 2))\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_code(completion, "add").startswith("def add")
    assert extract_code("```\ndef add(a, b): return a + b\n```", "add").startswith("def add")
    assert extract_code("```python\ndef add(a, b):\n    return a + b", "add").startswith("def add")  # cut off


def test_extract_code_falls_back_to_the_whole_text_only_if_it_parses():
    assert extract_code("def add(a, b): return a + b", "add") == "def add(a, b): return a + b"
    assert extract_code("The function adds the numbers.", "add") is None


def test_grade_code_runs_all_the_asserts():
    assert grade_code("```python\ndef add(a, b):\n    return a + b\n```", MBPP_RECORD).correct
    wrong = grade_code("```python\ndef add(a, b):\n    return a + b if a else 7\n```", MBPP_RECORD)
    assert (wrong.correct, wrong.reason) == (False, "assertion")
    assert grade_code("no code", MBPP_RECORD).reason == "no_code"


def test_grade_code_sys_exit_before_the_asserts_is_not_a_pass():
    grade = grade_code("```python\nimport sys\ndef add(a, b):\n    return 0\nsys.exit(0)\n```", MBPP_RECORD)
    assert (grade.correct, grade.reason) == (False, "error")


def test_setup_code_runs_after_the_candidate_code():
    """MBPP task 367's setup code builds Node objects of the class the solution defines."""
    record = {"id": "367", "kind": "code", "question": "", "answer": "",
              "meta": {"tests": ["assert depth(root) == 2"], "setup_code": "root = Node(1)\nroot.left = Node(2)",
                       "entry_point": "depth"}}
    code = ("class Node:\n    def __init__(self, v):\n        self.v, self.left, self.right = v, None, None\n"
            "def depth(n):\n    return 0 if n is None else 1 + max(depth(n.left), depth(n.right))\n")
    assert grade_code(f"```python\n{code}```", record).correct


def test_reward_is_one_or_zero_for_both_kinds():
    math_record = {"kind": "math", "answer": "4", "meta": {"benchmark": "math500"}}
    assert reward(r"so \boxed{4}", math_record) == 1.0
    assert reward(r"so \boxed{5}", math_record) == 0.0
    assert reward("```python\ndef add(a, b):\n    return a + b\n```", MBPP_RECORD) == 1.0
    assert reward("```python\ndef add(a, b):\n    return a - b\n```", MBPP_RECORD) == 0.0


def test_code_prompt_has_the_problem_and_only_the_first_test():
    prompt = evaluate.test_prompt(MBPP_RECORD)
    assert MBPP_RECORD["question"] in prompt and "assert add(1, 2) == 3" in prompt
    assert "assert add(0, 0) == 0" not in prompt and "```python" in prompt


# ---------------------------------------------------------------------------------------------------- pass@k

def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)      # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)   # 1 - C(7,5)/C(10,5)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0 and pass_at_k(4, 1, 4) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_evaluate_records_reports_pass_at_k_computed_by_hand():
    """3 problems x 4 samples with scripted answers: correct counts c = 3, 1, 0 (and levels 1, 1, 2).
    pass@1 = mean c/n = (3/4 + 1/4 + 0)/3 = 1/3; pass@2 = mean 1 - C(n-c,2)/C(4,2) = (1 + 1/2 + 0)/3 = 1/2;
    pass@4 = (1 + 1 + 0)/3 = 2/3; by level: 1 -> (3/4 + 1/4)/2 = 1/2, 2 -> 0."""
    records = [{"id": str(i), "kind": "math", "question": f"{i} + 1?", "answer": str(i + 1),
                "meta": {"benchmark": "synthetic", "level": 1 if i < 2 else 2}} for i in range(3)]
    right = {"0": [1, 1, 1, 0], "1": [0, 0, 1, 0], "2": [0, 0, 0, 0]}

    def complete(batch, n):
        texts = [[f"\\boxed{{{int(r['answer']) + (0 if ok else 7)}}}" for ok in right[r["id"]]] for r in batch]
        return texts, [[1] * n for _ in batch], [[True] * n for _ in batch]
    s = evaluate.evaluate_records(records, complete, samples=4)
    assert (s["pass@1"], s["pass@2"], s["pass@4"]) == (33.33, 50.0, 66.67)
    assert s["pass@1_by_level"] == {"1": 50.0, "2": 0.0} and s["reasons"] == {"passed": 4, "wrong": 8}


def test_summarize_of_greedy_rows_is_the_share_correct():
    rows = [{"num_correct": c, "reason": "passed" if c else "wrong", "level": None} for c in (1, 0, 0, 1, 1)]
    assert evaluate.summarize(rows, 1)["pass@1"] == 60.0 and evaluate.summarize([], 1)["pass@1"] is None


def test_derangement_moves_every_item_and_is_deterministic():
    for n in (2, 3, 10, 101):
        partner = evaluate.derangement(n, seed=1)
        assert sorted(partner) == list(range(n)) and all(partner[i] != i for i in range(n))
        assert partner == evaluate.derangement(n, seed=1)


def test_paper_average_pools_aime_and_needs_all_five():
    summaries = {"gsm8k": {"items": 10, "pass@1": 50.0}, "math500": {"items": 10, "pass@1": 40.0},
                 "minerva_math": {"items": 10, "pass@1": 30.0}, "olympiadbench": {"items": 10, "pass@1": 20.0},
                 "aime24": {"items": 30, "pass@1": 10.0}}
    assert evaluate.paper_average(evaluate.pool_summaries(summaries, 1)) is None       # aime25 missing
    summaries["aime25"] = {"items": 30, "pass@1": 0.0}
    pooled = evaluate.pool_summaries(summaries, 1)
    assert pooled["aime"]["items"] == 60 and pooled["aime"]["pass@1"] == 5.0
    assert evaluate.paper_average(pooled) == pytest.approx((50 + 40 + 30 + 20 + 5) / 5)


# ------------------------------------------------------------------------------------------ end-to-end (CLI)

GSM8K_ROWS = [{"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
              for a, b in [(1, 2), (10, 20), (300, 700), (5, 6), (7, 9)]]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_oracle_gold_scores_100_and_shuffled_scores_0(tmp_path, capsys):
    data_file = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    gold = evaluate.main(["--oracle", "gold", "--benchmarks", "gsm8k", "--data-file", str(data_file),
                          "--out", str(tmp_path / "gold")])
    assert gold["benchmarks"]["gsm8k"]["pass@1"] == 100.0
    shuffled = evaluate.main(["--oracle", "shuffled", "--benchmarks", "gsm8k", "--data-file", str(data_file),
                              "--out", str(tmp_path / "shuffled")])
    assert shuffled["benchmarks"]["gsm8k"]["pass@1"] == 0.0
    rows = evaluate.read_jsonl(tmp_path / "gold" / "gsm8k.jsonl")
    assert len(rows) == 5 and {"prompt", "completion", "extracted", "gold", "correct", "reason"} <= set(rows[0])
    assert json.loads((tmp_path / "gold" / "summary.json").read_text())["benchmarks"]["gsm8k"]["items"] == 5
    assert "pass@1" in capsys.readouterr().out


def test_cli_oracle_on_mbpp_runs_the_reference_code(tmp_path):
    rows = [{"text": "Add.", "code": "def add(a, b):\r\n    return a + b", "task_id": 11, "test_setup_code": "",
             "test_list": ["assert add(1, 2) == 3"], "challenge_test_list": []},
            {"text": "Mul.", "code": "def mul(a, b):\r\n    return a * b", "task_id": 12, "test_setup_code": "",
             "test_list": ["assert mul(2, 3) == 6"], "challenge_test_list": []}]
    data_file = write_jsonl(tmp_path / "mbpp.jsonl", rows)
    gold = evaluate.main(["--oracle", "gold", "--benchmarks", "mbpp", "--data-file", str(data_file),
                          "--out", str(tmp_path / "g")])
    shuffled = evaluate.main(["--oracle", "shuffled", "--benchmarks", "mbpp", "--data-file", str(data_file),
                              "--out", str(tmp_path / "s")])
    assert gold["benchmarks"]["mbpp"]["pass@1"] == 100.0 and shuffled["benchmarks"]["mbpp"]["pass@1"] == 0.0


def test_cli_resume_skips_finished_items_and_refuses_to_overwrite(tmp_path):
    data_file = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    out = tmp_path / "run"
    common = ["--oracle", "gold", "--benchmarks", "gsm8k", "--data-file", str(data_file), "--out", str(out)]
    first = evaluate.main(common + ["--limit", "2"])
    assert first["benchmarks"]["gsm8k"]["new_items"] == 2
    with pytest.raises(SystemExit):                                   # would overwrite: refused
        evaluate.main(common)
    with open(out / "gsm8k.jsonl", "a") as f:                         # an interrupted write: a torn last line
        f.write('{"id": "4", "trunc')
    second = evaluate.main(common + ["--resume"])
    assert second["benchmarks"]["gsm8k"]["new_items"] == 3 and second["benchmarks"]["gsm8k"]["items"] == 5
    ids = [r["id"] for r in evaluate.read_jsonl(out / "gsm8k.jsonl")]
    assert sorted(ids) == ["0", "1", "2", "3", "4"]
    third = evaluate.main(common + ["--resume"])
    assert third["benchmarks"]["gsm8k"]["new_items"] == 0 and third["benchmarks"]["gsm8k"]["pass@1"] == 100.0


# ------------------------------------------------------------------------------------------- tiny model runs

def test_evaluate_model_with_the_tiny_model_writes_one_line_per_item(tmp_path):
    import data
    import llm

    model, tokenizer = llm.tiny_model()
    records = data.synthetic_problems(3, seed=0, levels=(1, 2))
    summary = evaluate.evaluate_model(model, tokenizer, records, max_new_tokens=8, batch_size=2,
                                      out_path=tmp_path / "synthetic.jsonl", name="synthetic")
    rows = evaluate.read_jsonl(tmp_path / "synthetic.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in records)
    assert all(0 < r["completion_tokens"] <= 8 and r["reason"] in evaluate.MATH_REASONS for r in rows)
    assert all(r["correct"] == evaluate.grade_record(r["completion"], rec).correct    # each row graded ...
               for r, rec in zip(sorted(rows, key=lambda r: r["id"]), sorted(records, key=lambda r: r["id"])))
    by_id = {r["id"]: r for r in rows}                                                 # ... and summed by hand
    assert summary["items"] == 3 and summary["pass@1"] == round(100 * sum(r["correct"] for r in rows) / 3, 2)
    assert summary["pass@1_by_level"] == {
        str(level): round(100 * sum(by_id[r["id"]]["correct"] for r in records if r["meta"]["level"] == level)
                          / sum(r["meta"]["level"] == level for r in records), 2) for level in (1, 2)}


def test_evaluate_model_pass_at_k_with_samples(tmp_path):
    import data
    import llm

    model, tokenizer = llm.tiny_model()
    records = data.synthetic_problems(2, seed=0, levels=(1,))
    summary = evaluate.evaluate_model(model, tokenizer, records, samples=3, temperature=1.0, max_new_tokens=4,
                                      batch_size=6)
    assert {"pass@1", "pass@2", "pass@3"} <= set(summary)
    with pytest.raises(ValueError):
        evaluate.evaluate_model(model, tokenizer, records, samples=3, temperature=0.0)


def test_cli_with_the_tiny_model(tmp_path):
    result = evaluate.main(["--model", "tiny", "--benchmarks", "synthetic", "--limit", "2", "--max-new-tokens",
                            "4", "--out", str(tmp_path)])
    assert result["benchmarks"]["synthetic"]["items"] == 2


# ------------------------------------------------------------------------------------ bad input: one line each

def bad_files(tmp_path):
    good = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS[:2])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    return good


BAD_EVAL_ARGS = [
    (["--data-file", "{tmp}/empty.jsonl"], "no gsm8k records"),
    (["--data-file", "{tmp}/list.json"], "no gsm8k records"),
    (["--data-file", "{tmp}/binary.jsonl"], "not a UTF-8 text file"),
    (["--data-file", "{tmp}/missing.jsonl"], "--data-file {tmp}/missing.jsonl: no such file"),
    (["--data-file", "{tmp}/gsm8k.jsonl", "--benchmarks", "gsm8k,math500"], "--data-file holds one benchmark"),
    (["--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere: no such directory"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--memory-mb", "8"], "--memory-mb 8: must be at least"),
    (["--timeout", "0"], "--timeout 0: must be at least"),
    (["--device", "tpu"], "--device must be one of auto, cuda, mps, cpu"),
    (["--bf16", "--fp16"], "--bf16 and --fp16 exclude each other"),
    (["--samples", "3"], "--samples 3 needs --temperature > 0"),
    (["--benchmarks", ""], "--benchmarks must name at least one benchmark"),
    (["--benchmarks", "gsm8k,gsm9k"], "--benchmarks: unknown benchmark 'gsm9k'"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--seed", "-2"], "--seed must be >= 0"),
    (["--out", ""], "--out must not be empty"),
    (["--oracle", "silver"], "--oracle must be 'gold' or 'shuffled'"),
    (["--model", ""], "--model must name a model"),
]


@pytest.mark.parametrize("args,message", BAD_EVAL_ARGS)
def test_cli_bad_input_is_one_line_before_any_model_loads(tmp_path, monkeypatch, capsys, args, message):
    import llm
    bad_files(tmp_path)
    monkeypatch.setattr(llm, "load_model", lambda name: pytest.fail("a model was loaded"))
    monkeypatch.setattr(llm, "tiny_model", lambda *a, **k: pytest.fail("a model was loaded"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    argv = ["--model", "tiny", "--benchmarks", "gsm8k", "--out", str(tmp_path / "out")]
    argv += ["--data-file", str(tmp_path / "gsm8k.jsonl")] if "--data-file" not in args else []
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv + args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("evaluate.py: error: ") and err.count("\n") == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err


def test_every_eval_config_field_has_a_bad_value_in_the_table():
    import dataclasses
    covered = {a[2:].replace("-", "_") for args, _ in BAD_EVAL_ARGS for a in args if a.startswith("--")}
    flags = {"resume", "quiet"}                                     # booleans: present or not
    assert {f.name for f in dataclasses.fields(evaluate.EvalConfig)} - covered - flags == set()


@pytest.mark.parametrize("last_line,message", [
    ("null", "expected a result object"), ("[1, 2]", "got [1, 2]"),
    ('{"id": "9", "num_correct": 1}', 'with "id", "n" >= 1'), ('{"id": "9", "n": 1, "num_correct": 2}', "0..n"),
])
def test_cli_resume_over_a_malformed_results_line_is_one_line(tmp_path, capsys, last_line, message):
    data_file = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    common = ["--oracle", "gold", "--benchmarks", "gsm8k", "--data-file", str(data_file), "--out",
              str(tmp_path / "out")]
    evaluate.main(common + ["--limit", "2"])
    with open(tmp_path / "out" / "gsm8k.jsonl", "a") as f:
        f.write(last_line + "\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        evaluate.main(common + ["--resume"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "gsm8k.jsonl:3: " in err and message in err and err.count("\n") == 1, err


def test_cli_model_error_is_one_line(tmp_path, monkeypatch, capsys):
    import llm

    def load_model(name, **kwargs):
        raise llm.ModelError(f"cannot load {name!r} from the Hugging Face Hub (offline or unknown id)")
    monkeypatch.setattr(llm, "load_model", load_model)
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--model", "no-one/nothing", "--benchmarks", "gsm8k", "--data-file",
                       str(write_jsonl(tmp_path / "g.jsonl", GSM8K_ROWS)), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("evaluate.py: error: cannot load 'no-one/nothing' from the Hugging Face Hub "
                                       "(offline or unknown id)\n")


# ------------------------------------------------------------------------------------- the ladder (issue 13)

def test_ladder_answers_are_graded_by_their_last_number_like_synthetic():
    import data
    record = data.ladder_problems(1, seed=0)[0]                        # "What is 4 + 4?", answer 8
    assert evaluate.reward("4 + 4 = 8", record) == 1.0                 # the model's usual short answer
    assert evaluate.reward("4 + 4 = 8, not 9", record) == 0.0          # the last number counts
    assert evaluate.reward(record["meta"]["solution"], record) == 1.0  # the gold worked solution


def test_summary_counts_mixed_groups_overall_and_per_level():
    rows = [{"num_correct": c, "level": level, "reason": "wrong"}
            for c, level in [(0, 1), (2, 1), (4, 1), (3, 2), (1, 2), (0, 2), (0, 2), (4, 2)]]
    summary = evaluate.summarize(rows, samples=4)
    assert summary["mixed_share"] == 37.5                              # 3 of 8: c = 2, 3, 1
    assert summary["mixed_share_by_level"] == {"1": 33.33, "2": 40.0}  # 1 of 3, 2 of 5
    assert summary["pass@1_by_level"] == {"1": 50.0, "2": 40.0}        # (0+2+4)/12, (3+1+0+0+4)/20
    single = [{"num_correct": 1, "level": 1, "reason": "passed"}, {"num_correct": 0, "level": 1, "reason": "wrong"}]
    assert "mixed_share" not in evaluate.summarize(single, samples=1)           # greedy: no groups
    table = evaluate.format_table({"ladder": {**summary, "items": 8}}, samples=4)
    assert "ladder level 2" in table and "mixed groups 40.0 %" in table
