"""data.py: counts on the real benchmark files, hand-checked gold answers with each benchmark's quirk,
the synthetic task, and the one-line errors for bad files."""
import json

import pytest

import data

COUNTS = {"gsm8k": 1319, "math": 5000, "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40,
          "minerva_math": 272, "olympiadbench": 675, "mbpp": 500, "mbpp_sanitized": 257}


@pytest.mark.parametrize("name,count", COUNTS.items())
def test_loaders_give_the_published_counts(data_dir, name, count):
    records = data.load_benchmark(name, data_dir=data_dir)
    assert len(records) == count
    assert all(set(r) == {"id", "question", "answer", "kind", "meta"} for r in records)
    assert all(r["question"].strip() and r["answer"].strip() for r in records)
    assert len({r["id"] for r in records}) == count  # ids are unique: results files are keyed by them


def by_id(records, id):
    return next(r for r in records if r["id"] == str(id))


def test_gsm8k_gold_is_the_number_after_hashes_without_commas(data_dir):
    records = data.load_benchmark("gsm8k", data_dir=data_dir)
    assert records[0]["answer"] == "18"  # Janet's ducks: 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars
    with_comma = [r for r in records if "," in r["meta"]["solution"].split("####")[-1]]
    assert with_comma, "GSM8K test has answers written with thousands separators"
    assert all("," not in r["answer"] and r["answer"].lstrip("-").replace(".", "").isdigit() for r in records)


def test_math_gold_is_the_last_box_with_nested_braces_and_keeps_level(data_dir):
    records = data.load_benchmark("math", data_dir=data_dir)
    first = by_id(records, "test/algebra/1.json")  # "How many vertical asymptotes ... y = 2/(x^2+x-6)": 2
    assert (first["answer"], first["meta"]["level"], first["meta"]["type"]) == ("2", 3, "Algebra")
    nested = [r for r in records if r["answer"].count("{") >= 2]
    assert nested and all(r["answer"].count("{") == r["answer"].count("}") for r in nested)
    assert {r["meta"]["level"] for r in records} >= {1, 2, 3, 4, 5}


def test_math500_answers_equal_the_last_box_of_their_solutions(data_dir):
    records = data.load_benchmark("math500", data_dir=data_dir)
    assert records[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"  # (0,3) in polar coordinates
    assert all(data.last_boxed(r["meta"]["solution"]) == r["answer"] for r in records)


def test_aime_keeps_leading_zeros_and_amc_keeps_floats(data_dir):
    aime24 = data.load_benchmark("aime24", data_dir=data_dir)
    assert "025" in [r["answer"] for r in aime24]  # the grader compares as numbers: 025 = 25
    assert data.load_benchmark("aime25", data_dir=data_dir)[0]["answer"] == "70"  # bases b > 9: 21 + 49
    assert data.load_benchmark("amc23", data_dir=data_dir)[0]["answer"] == "27.0"  # 45 mi at 18+12 mph


def test_minerva_gold_is_boxed_in_solution(data_dir):
    records = data.load_benchmark("minerva_math", data_dir=data_dir)
    assert records[0]["answer"] == "1.6"  # Magellan telescope image diameter, in cm
    assert records[1]["answer"] == "4.5e33"


def test_olympiadbench_splits_several_answers_held_in_one_string(data_dir):
    records = data.load_benchmark("olympiadbench", data_dir=data_dir)
    assert records[0]["meta"]["answers"] == ["2"]
    two = [r for r in records if r["meta"]["answers"] == ["69", "84"]]
    assert len(two) == 1 and two[0]["answer"] == "69, 84" and two[0]["meta"]["multiple"]
    answers = [a for r in records for a in r["meta"]["answers"]]
    assert not any(a.startswith("$") or a.endswith("$") for a in answers)  # math-mode dollars removed


def test_mbpp_test_split_is_task_ids_11_to_510_with_tests_and_entry_point(data_dir):
    records = data.load_benchmark("mbpp", data_dir=data_dir)
    assert [r["meta"]["task_id"] for r in records] == list(range(11, 511))
    first = records[0]
    assert first["kind"] == "code" and first["meta"]["entry_point"] == "remove_Occ"
    assert first["meta"]["tests"][0] == 'assert remove_Occ("hello","l") == "heo"'
    setup = [r for r in records if r["meta"]["setup_code"]]
    assert [r["meta"]["task_id"] for r in setup] == [367]  # the binary-tree task builds its trees first


def test_limit_and_train_split(data_dir):
    assert len(data.load_benchmark("gsm8k", data_dir=data_dir, limit=7)) == 7
    assert len(data.load_benchmark("math", data_dir=data_dir, split="train")) == 7500


def test_synthetic_problems_are_deterministic_and_their_answer_follows_the_steps():
    a, b = data.synthetic_problems(50, seed=3), data.synthetic_problems(50, seed=3)
    assert a == b and a != data.synthetic_problems(50, seed=4)
    for p in a:
        lines = p["meta"]["solution"].splitlines()
        assert len(lines) - 1 == p["meta"]["level"]  # one solution line per step, then the answer line
        value = int(lines[0].split()[0])
        for line in lines[:-1]:  # replay "x op k = y" and check every step
            x, op, k, _, y = line.split()
            value = {"+": value + int(k), "-": value - int(k), "*": value * int(k)}[op]
            assert int(x) * 0 + value == int(y)
        assert str(value) == p["answer"] and value > 0
    assert {p["meta"]["level"] for p in a} == {1, 2, 3, 4, 5}


def test_synthetic_benchmark_train_and_test_differ():
    test = data.load_benchmark("synthetic", limit=20)
    train = data.load_benchmark("synthetic", limit=20, split="train")
    assert {p["question"] for p in test}.isdisjoint({p["question"] for p in train})


# ---- bad input: one line naming the file, the line and the field ----

def test_missing_file_is_named(tmp_path):
    with pytest.raises(data.DataError, match=r"nope\.jsonl: no such file"):
        data.load_benchmark("gsm8k", data_file=tmp_path / "nope.jsonl")


def test_malformed_json_names_file_and_line(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{not json\n")
    with pytest.raises(data.DataError, match=r"g\.jsonl:2: malformed JSON"):
        data.load_benchmark("gsm8k", data_file=f)


def test_missing_field_names_file_line_and_field(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps({"problem": "p", "solution": r"\boxed{1}"}) + "\n" + json.dumps({"problem": "p"}) + "\n")
    with pytest.raises(data.DataError, match=r"m\.jsonl:2: missing field 'solution'"):
        data.load_benchmark("math", data_file=f)


def test_gsm8k_answer_without_hashes_is_reported(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "42"}) + "\n")
    with pytest.raises(data.DataError, match=r"g\.jsonl:1: field 'answer' has no '#### <number>' line"):
        data.load_benchmark("gsm8k", data_file=f)


def test_json_that_is_not_a_list_or_object_is_reported(tmp_path):
    f = tmp_path / "s.json"
    f.write_text('{"task_id": 1}')
    with pytest.raises(data.DataError, match=r"s\.json: expected a JSON list"):
        data.load_benchmark("mbpp_sanitized", data_file=f)
    g = tmp_path / "g.jsonl"
    g.write_text("[1, 2]\n")
    with pytest.raises(data.DataError, match=r"g\.jsonl:1: expected a JSON object, got list"):
        data.load_benchmark("gsm8k", data_file=g)


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(data.DataError, match="unknown benchmark 'gsm9k'; choose from gsm8k, math"):
        data.load_benchmark("gsm9k")


# ---- the ladder (issue 13): five levels, answers and levels known by construction ----

def test_ladder_first_questions_hand_checked():
    first = data.ladder_problems(5, seed=0)
    assert [(p["id"], p["question"], p["answer"], p["meta"]["level"]) for p in first[:4]] == [
        ("ladder-1-0", "What is 4 + 4? Give only the number.", "8", 1),      # 4 + 4 = 8, below 10
        ("ladder-2-1", "What is 7 + 8? Give only the number.", "15", 2),     # carries past 10
        ("ladder-3-2", "What is 15 + 43? Give only the number.", "58", 3),
        ("ladder-4-3", "What is 75 - 8? Give only the number.", "67", 4)]
    word = first[4]  # 7 shells, doubled -> 14, doubled -> 28, -3 -> 25: three steps
    assert word["question"] == ("Emma has 7 shells. Then Emma doubles the number of shells. Then Emma doubles the "
                                "number of shells. Then Emma gives away 3 shells. How many shells does Emma have now?")
    assert (word["answer"], word["meta"]["level"], word["meta"]["steps"]) == ("25", 5, 3)
    assert {p["meta"]["benchmark"] for p in first} == {"ladder"} and {p["kind"] for p in first} == {"math"}


def test_every_ladder_question_is_of_its_level_and_its_answer_is_right():
    import re
    problems = data.ladder_problems(500, seed=3)
    assert [sum(p["meta"]["level"] == k for p in problems) for k in (1, 2, 3, 4, 5)] == [100] * 5  # balanced
    for p in problems:
        level, answer = p["meta"]["level"], int(p["answer"])
        assert f"\\boxed{{{answer}}}" in p["meta"]["solution"]
        if level == 5:
            assert p["meta"]["steps"] == 3 and p["meta"]["solution"].count("\n") == 3  # three lines + the answer
            continue
        a, sign, b = re.fullmatch(r"What is (\d+) ([+-]) (\d+)\? Give only the number\.", p["question"]).groups()
        a, b = int(a), int(b)
        assert answer == (a + b if sign == "+" else a - b) >= 0
        digits = (len(str(a)), len(str(b)))
        assert {1: digits == (1, 1) and answer <= 9, 2: digits == (1, 1) and answer >= 10,
                3: digits == (2, 2), 4: digits == (2, 1)}[level], p
        assert sign == "+" or level == 4


def test_ladder_is_deterministic_by_seed_and_no_test_question_is_a_training_question():
    assert data.ladder_problems(40, seed=5) == data.ladder_problems(40, seed=5)
    assert data.ladder_problems(40, seed=5) != data.ladder_problems(40, seed=6)
    test = data.load_benchmark("ladder", limit=500)
    train = data.load_benchmark("ladder", limit=500, split="train")
    assert test == data.ladder_problems(500, seed=0, split="test")
    assert train == data.ladder_problems(500, seed=1_000_003, split="train")
    questions = lambda records: {r["question"] for r in records}  # noqa: E731
    assert not questions(test) & questions(train)  # even levels 1 and 2, with 36 and 45 distinct sums
    assert all(data.in_test_split(q) for q in questions(test)) and not any(map(data.in_test_split, questions(train)))
    # every level has questions on both sides: 500 draws of level 1 see all 36 sums, 13 of them on the test side
    sums = {r["question"] for r in data.ladder_problems(500, seed=1, levels=(1,))}
    assert len(sums) == 36 and sum(map(data.in_test_split, sums)) == 13
    for level in (1, 2, 3, 4, 5):
        assert {r["meta"]["level"] for r in data.ladder_problems(3, seed=2, levels=(level,), split="test")} == {level}
    assert len(data.load_benchmark("ladder")) == 500 and "ladder" in data.BENCHMARKS
    with pytest.raises(ValueError, match="ladder split must be 'test', 'train' or None, got 'val'"):
        data.ladder_problems(2, split="val")


def test_ladder_level_outside_one_to_five_is_an_error():
    with pytest.raises(ValueError, match="ladder level must be one of \\[1, 2, 3, 4, 5\\], got 6"):
        data.ladder_problems(2, levels=(1, 6))


# ---- last_boxed / braced: the mutants that survived mutmut's run (tests/MUTATION.md, third run) ----

def test_last_boxed_of_a_completion_cut_off_at_the_macro_keeps_the_earlier_box():
    """A completion cut off by the token limit can end in '\\boxed' or '\\framebox[2cm'. Mutations last_boxed 4, 5,
    23, 28 (an index one past the end: IndexError) and 17 (return instead of break: the earlier box lost)."""
    assert data.last_boxed(r"so \boxed{3}, or rather \boxed") == "3"
    assert data.last_boxed("\\boxed  ") is None
    assert data.last_boxed(r"\boxed{3} then \framebox[2cm") == "3"
    assert data.last_boxed(r"\framebox[2cm]") is None


def test_framebox_options_end_at_their_own_bracket():
    """Mutations last_boxed 13 (rfind: the last ']' of the text) and 10, 12 (find from the start: the ']' of an
    earlier '[0, 1]'; with two options '[2cm][c]' those loop for ever, mutmut's two timeouts)."""
    assert data.last_boxed(r"\framebox[2cm]{5} for x in [0, 1]") == "5"
    assert data.last_boxed(r"for x in [0, 1]: \framebox[2cm]{5}") == "5"


def test_a_box_macro_without_an_argument_is_no_box():
    """'\\boxed' followed by punctuation, '$' or nothing but a full stop holds no answer; the earlier box stays.
    Mutations last_boxed 39 (j >= i: the token right after the macro, ')' here), 46 (token or ...: '' for '.',
    AttributeError for '$') and 47 (rstrip(None): '.' kept as a token, then stripped to '')."""
    assert data.last_boxed(r"the answer is \boxed{5} (in a \boxed)") == "5"
    assert data.last_boxed(r"\boxed{5}, not \boxed .") == "5"
    assert data.last_boxed(r"\boxed{5}, not \boxed $x$") == "5"


def test_a_spaced_box_token_may_be_a_capital_x():
    """Mutations last_boxed 51, 57 (rstrip("XX.,;XX") also strips X: 'X.' gave no answer, '2X' gave '2')."""
    assert data.last_boxed(r"it is \boxed X.") == "X"
    assert data.last_boxed(r"it is \boxed 2X.") == "2X"


def test_braced_returns_the_group_and_the_index_after_its_closing_brace():
    """Mutations braced 23, 24 (end j - 1 / j + 2)."""
    assert data.braced("a{b{c}d}e", 1) == ("b{c}d", 8)
    assert data.braced("{x", 0) is None
