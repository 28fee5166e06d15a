"""
data.py — the benchmarks of the ILR paper and a synthetic task, all in one record schema.

Where it sits in ILR (arXiv 2509.26306): training questions for the co-training loop (ilr.py; the paper trains on
MATH), the validation set for each model's ability γ (irt.py; the paper uses 1,000 held-out MATH questions), and
the test sets each trained model is evaluated on alone (evaluate.py): GSM8K, MATH-500, Minerva Math,
OlympiadBench, AIME 2024 + 2025 — the paper's five-benchmark "Avg" — and MBPP (code, out of domain).

Every loader returns plain dicts of one shape:

    {"id": str, "question": str, "answer": str, "kind": "math" | "code", "meta": dict}

- math: `answer` is the gold final answer as text; `meta["solution"]` the gold worked solution where the
  benchmark has one, `meta["level"]` (MATH 1–5, synthetic = number of reasoning steps), `meta["benchmark"]`.
- code (MBPP): `question` is the problem text, `answer` the reference code; `meta` holds `tests` (assert lines),
  `setup_code`, `challenge_tests`, `entry_point` (the function the tests call) and `task_id`.

Sources. By default each benchmark comes from the Hugging Face Hub (`HUB` below names the dataset of each and
the fields it serves; `datasets` is in requirements.txt; a network the first time, its cache offline after). With
`data_dir=` (a folder laid out like ../shared/data) or `data_file=` (one JSONL / JSON file in the benchmark's own
format) nothing leaves the machine: that is how the tests and CI run. `python data.py download --out DIR` writes
that layout from the Hub once (tests/fakehub.py is the Hub the tests use).

    import data
    gsm8k = data.load_benchmark("gsm8k", data_dir="../shared/data")          # 1319 records
    train = data.synthetic_problems(100, seed=0, levels=(1, 2))               # offline, difficulty known

Gold answers, per benchmark (see ../shared/data/SOURCES.md for the quirks):
1. GSM8K: the text after `####` in the solution, commas removed ("1,000" → "1000").
2. MATH, MATH-500, Minerva: the last `\\boxed{...}` of the solution, nested braces kept (MATH-500 also has an
   `answer` field; we take it as given — it equals the last box). Minerva on the Hub has no solution, only its
   `answer` (the boxed answer), taken as given too.
3. AIME: the answer as given ("025" stays "025"; the grader compares numbers, so 025 = 25).
4. AMC23: a float in the file (27.0); we keep "27.0" and the grader compares numbers.
5. OlympiadBench: `final_answer` is a list of one string, which may hold several answers ('$69$,$84$');
   `meta["answers"]` is the list of answers (split at '$,$', outer `$` removed), `answer` joins it with ", ".
6. MBPP: the test split is task ids 11–510 (500 tasks), per the google-research README; the sanitized set keeps
   its test-split tasks (257).
"""

from __future__ import annotations

import json
import random
import re
import sys
import zlib
from pathlib import Path


class DataError(ValueError):
    """Bad benchmark input; the message is one line naming the file, line and field."""


# Hugging Face Hub dataset of each benchmark: (dataset id, config, split of the test set). Used only without
# data_dir/data_file. gsm8k and math also have a "train" split (the training questions). The field names each
# Hub dataset serves, from its dataset card, and where a record's fields come from (local file → Hub):
#   gsm8k          question, answer (worked solution ending "#### n"): the same two fields as the local file.
#   math           problem, level ("Level 3"), type, solution: as the local file, but NO unique_id (ids become
#                  the row index), so ilr.py excludes MATH-500 from the validation set by problem text too.
#   math500        problem, solution, answer, subject, level (int), unique_id: the same fields (a test.jsonl).
#   aime24         id (int), problem, solution, answer (str), url, year: the local file's `question` copy of
#                  `problem` is absent; `problem` is read first in both.
#   aime25         problem, answer (str), id (str): the local file has problem, answer only (ids = row index).
#   amc23          id, question, answer, url: read from `question` (the local file has `problem` too).
#   minerva_math   question, answer (the boxed answer itself): NO solution, type or idx; the local file has
#                  problem, solution, type, idx and its gold is the last box of the solution.
#   olympiadbench  id, question, solution (list), final_answer (list), context, is_multiple_answer, unit,
#                  answer_type, error, subfield (+ image / language / modality columns we do not read): the
#                  same fields as the local file (the config is the English text-only open-ended maths set;
#                  its one split is called "train").
#   mbpp           task_id, text, code, test_list, test_setup_code, challenge_test_list; the Hub's "test" split
#                  holds task ids 11–510 only (the local file holds all 974 and is filtered to the same).
#   mbpp_sanitized source_file, task_id, prompt, code, test_imports, test_list (the same fields).
HUB = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "math": ("DigitalLearningGmbH/MATH-lighteval", "default", "test"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train"),
    "aime25": ("math-ai/aime25", None, "test"),
    "amc23": ("math-ai/amc23", None, "test"),
    "minerva_math": ("math-ai/minervamath", None, "test"),
    "olympiadbench": ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
    "mbpp": ("google-research-datasets/mbpp", "full", "test"),
    "mbpp_sanitized": ("google-research-datasets/mbpp", "sanitized", "test"),
}
HUB_TRAIN = {"gsm8k": "train", "math": "train"}  # benchmark → Hub split of its training questions

# Local layout (the one of ../shared/data): benchmark → file under data_dir, for split "test" / "train".
LOCAL = {
    "gsm8k": "gsm8k/{split}.jsonl",
    "math": "math/{split}.jsonl",
    "math500": "math500/test.jsonl",
    "aime24": "aime24/test.jsonl",
    "aime25": "aime25/test.jsonl",
    "amc23": "amc23/test.jsonl",
    "minerva_math": "minerva_math/test.jsonl",
    "olympiadbench": "olympiadbench/test.jsonl",
    "mbpp": "mbpp/mbpp.jsonl",
    "mbpp_sanitized": "mbpp/sanitized-mbpp.json",
}
BENCHMARKS = tuple(LOCAL) + ("synthetic", "ladder")
MBPP_TEST_IDS = range(11, 511)  # google-research MBPP README: 1–10 few-shot, 11–510 test, 511–600 validation


# ----------------------------------------------------------------------------------------------------------
# Answer extraction used for gold answers (the evaluator uses the same function on model output)
# ----------------------------------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")


def braced(text: str, i: int) -> tuple[str, int] | None:
    """(content, end) of the {...} group starting at text[i] == '{', nested braces kept; None if unbalanced."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j], j + 1
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the LAST complete \boxed{...} / \boxed x / \fbox{...} / \framebox[..]{...} in `text`, nested
    braces kept; None if there is none ('' for an empty box, which the grader and the format reward count as no
    answer). The ONE definition of "the boxed answer": gold answers here, the grader (evaluate.extract_answer)
    and the format reward (ilr.well_formed) all read boxes with it.

    >>> last_boxed(r"so $x = \boxed{\frac{\sqrt{2}}{2}}$ and not \boxed{3}")
    '3'
    >>> last_boxed(r"\boxed{\frac{\sqrt{2}}{2}}"), last_boxed(r"first \boxed{1}, then \fbox{2}")
    ('\\frac{\\sqrt{2}}{2}', '2')
    >>> last_boxed(r"it is \boxed 7."), last_boxed(r"\framebox[2cm]{5}"), last_boxed(r"\boxed{}"), last_boxed("no")
    ('7', '5', '', None)
    """
    found = None
    for match in _BOX.finditer(text):
        i = match.end()
        while i < len(text) and text[i] == "[":                # \framebox[width][pos]{...}
            close = text.find("]", i)
            if close < 0:
                break
            i = close + 1
        j = i
        while j < len(text) and text[j].isspace():
            j += 1
        if j < len(text) and text[j] == "{":
            group = braced(text, j)
            if group is not None:
                found = group[0].strip()
        elif j > i:                                           # "\boxed 7": the token after the space
            token = re.match(r"[^\s$]+", text[j:])
            if token and token.group(0).rstrip(".,;"):
                found = token.group(0).rstrip(".,;")
    return found


def gsm8k_gold(solution: str) -> str:
    """The number after `####`, commas removed.

    >>> gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\\n#### 1,018")
    '1018'
    """
    if "####" not in solution:
        raise ValueError("no '####' in the GSM8K solution")
    return solution.split("####")[-1].strip().replace(",", "")


# ----------------------------------------------------------------------------------------------------------
# Reading files, with errors that name the file, the line and the field
# ----------------------------------------------------------------------------------------------------------

def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) pairs from a JSONL file, or from a JSON file holding a list (line = index + 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
        pairs = list(enumerate(rows, 1))
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                pairs.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: malformed JSON ({e.msg} at column {e.colno})") from None
    for number, row in pairs:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
    return pairs


def _field(row: dict, where: str, *names: str):
    """The first of `names` present in `row` (local files and the Hub name some fields differently)."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise DataError(f"{where}: missing field {' or '.join(repr(n) for n in names)}")


def _record(id, question, answer, kind="math", **meta) -> dict:
    return {"id": str(id), "question": question, "answer": str(answer), "kind": kind, "meta": meta}


# ----------------------------------------------------------------------------------------------------------
# One converter per benchmark: raw row → record. `where` is "file:line" for error messages.
# ----------------------------------------------------------------------------------------------------------

def _gsm8k(row, where, index):
    solution = _field(row, where, "answer")
    try:
        gold = gsm8k_gold(solution)
    except ValueError:
        raise DataError(f"{where}: field 'answer' has no '#### <number>' line") from None
    return _record(index, _field(row, where, "question"), gold, solution=solution, benchmark="gsm8k")


def _boxed_math(benchmark):
    def convert(row, where, index):
        # Gold answer: MATH-500 (both sources) and Minerva on the Hub give it in `answer`; otherwise (MATH, the
        # local Minerva file, which has no `answer`) it is the last box of the worked solution.
        gold = row.get("answer") if benchmark in ("math500", "minerva_math") else None
        solution = row.get("solution")
        if gold is None:
            solution = _field(row, where, *(("solution",) if benchmark == "math" else ("answer", "solution")))
            gold = last_boxed(solution)
            if gold is None:
                raise DataError(f"{where}: field 'solution' has no \\boxed{{}} answer")
        level = row.get("level")
        if isinstance(level, str):                                   # MATH: "Level 3" (or "Level ?")
            level = int(level.split()[-1]) if level.split()[-1].isdigit() else None
        id = row.get("unique_id", row.get("idx", index))           # the Hub's MATH and Minerva: the row index
        return _record(id, _field(row, where, "problem", "question"), gold, solution=solution, level=level,
                       type=row.get("type", row.get("subject")), benchmark=benchmark)
    return convert


def _answer_only(benchmark):
    def convert(row, where, index):
        answer = _field(row, where, "answer")
        if isinstance(answer, float) and benchmark == "aime25":
            answer = int(answer)
        return _record(row.get("id", index), _field(row, where, "problem", "question"), answer,
                       solution=row.get("solution"), benchmark=benchmark)
    return convert


def _olympiadbench(row, where, index):
    answers = _field(row, where, "final_answer")
    if not isinstance(answers, list) or not answers:
        raise DataError(f"{where}: field 'final_answer' must be a non-empty list of strings")
    # '$69$,$84$' is one list element holding two answers: split at '$,$', then drop the math-mode dollars.
    answers = [part.strip().strip("$").strip() for a in answers for part in re.split(r"\$\s*,\s*\$", str(a))]
    solution = row.get("solution")
    solution = "\n".join(solution) if isinstance(solution, list) else solution
    question = _field(row, where, "question")
    if row.get("context"):
        question = f"{row['context']}\n\n{question}"
    return _record(row.get("id", index), question, ", ".join(answers), solution=solution, answers=answers,
                   multiple=bool(row.get("is_multiple_answer")), unit=row.get("unit"),
                   answer_type=row.get("answer_type"), benchmark="olympiadbench")


def entry_point(test: str) -> str | None:
    """The function an MBPP assert calls: `assert math.isclose(area(2), 4)` → 'area'.

    >>> entry_point("assert set(similar_elements((3, 4), (5, 4))) == set((4,))")
    'similar_elements'
    """
    builtins = {"set", "sorted", "list", "tuple", "abs", "round", "math", "isclose", "str", "int", "float",
                "len", "dict", "frozenset", "all", "any", "sum", "min", "max"}
    for name in re.findall(r"([A-Za-z_][A-Za-z_0-9]*)\s*\(", test):
        if name not in builtins:
            return name
    return None


def _mbpp(benchmark):
    def convert(row, where, index):
        task_id = int(_field(row, where, "task_id"))
        tests = _field(row, where, "test_list")
        if not isinstance(tests, list) or not tests:
            raise DataError(f"{where}: field 'test_list' must be a non-empty list of assert strings")
        imports = row.get("test_imports") or []
        setup = "\n".join(list(imports) + [row.get("test_setup_code") or ""]).strip()
        return _record(task_id, _field(row, where, "text", "prompt"), _field(row, where, "code"), kind="code",
                       tests=tests, setup_code=setup, challenge_tests=row.get("challenge_test_list") or [],
                       entry_point=entry_point(tests[0]), task_id=task_id, benchmark=benchmark)
    return convert


CONVERTERS = {
    "gsm8k": _gsm8k,
    "math": _boxed_math("math"),
    "math500": _boxed_math("math500"),
    "minerva_math": _boxed_math("minerva_math"),
    "aime24": _answer_only("aime24"),
    "aime25": _answer_only("aime25"),
    "amc23": _answer_only("amc23"),
    "olympiadbench": _olympiadbench,
    "mbpp": _mbpp("mbpp"),
    "mbpp_sanitized": _mbpp("mbpp_sanitized"),
}


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

def _hub_rows(name: str, split: str) -> list[tuple[str, dict]]:
    """(where, row) pairs of benchmark `name` as the Hub serves them (field names of HUB's comment)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"loading {name!r} from the Hugging Face Hub needs `pip install datasets` "
                        f"(or pass a local --data-dir / --data-file)") from None
    repo, config, hub_split = HUB[name]
    if split == "train":
        hub_split = HUB_TRAIN.get(name, hub_split)
    try:
        rows = datasets.load_dataset(repo, config, split=hub_split)
    except Exception as e:  # offline, unknown id, changed layout: say which and what works instead
        raise DataError(f"cannot load {name!r} from the Hub ({repo}): {str(e).splitlines()[0][:160]}; "
                        f"pass --data-dir DIR (layout of shared/data; `python data.py download --out DIR` "
                        f"writes it) or --data-file FILE") from None
    return [(f"{repo}[{i}]", dict(row)) for i, row in enumerate(rows)]


def load_benchmark(name: str, data_dir=None, data_file=None, limit: int | None = None,
                   split: str = "test", seed: int = 0) -> list[dict]:
    """Records of benchmark `name` (see BENCHMARKS), in file order; `limit` keeps the first `limit`.

    `split` ("test" or "train") matters for gsm8k and math only. "synthetic" and "ladder" need no file: they
    make `limit` problems (default 500) from `seed`, test and train being different seeds.
    """
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    if split not in ("test", "train"):
        raise DataError(f"unknown split {split!r}; choose 'test' or 'train'")
    if name == "synthetic":
        return synthetic_problems(limit or 500, seed=seed + (0 if split == "test" else 1_000_003))
    if name == "ladder":  # the same, and each question on one side of a fixed split (no test question is trained on)
        return ladder_problems(limit or 500, seed=seed + (0 if split == "test" else 1_000_003), split=split)
    if data_file is not None:
        rows = [(f"{data_file}:{n}", row) for n, row in read_records(data_file)]
    elif data_dir is not None:
        path = Path(data_dir) / LOCAL[name].format(split=split)
        rows = [(f"{path}:{n}", row) for n, row in read_records(path)]
    else:
        rows = _hub_rows(name, split)
    records = [CONVERTERS[name](row, where, i) for i, (where, row) in enumerate(rows)]
    if name.startswith("mbpp") and split == "test":
        records = [r for r in records if r["meta"]["task_id"] in MBPP_TEST_IDS]
    return records[:limit] if limit else records


def download(out, names=None) -> list[tuple[Path, int]]:
    """Write the local layout (LOCAL) under `out` from the Hub, once, so that later runs need no network.

    Each file holds the rows as the Hub serves them (Hub field names, JSON lines; MBPP sanitized a JSON list);
    the converters read either field names, so `load_benchmark(name, data_dir=out)` gives the same records as
    the Hub path. Each file is written aside and renamed, and read back through its converter before the rename.
    Returns (path, number of rows) per file written.
    """
    names = list(names or LOCAL)
    unknown = [n for n in names if n not in LOCAL]
    if unknown:
        raise DataError(f"cannot download {', '.join(map(repr, unknown))}: choose from {', '.join(LOCAL)}")
    written = []
    for name in names:
        for split in ("test", "train") if "{split}" in LOCAL[name] else ("test",):
            rows = [row for _, row in _hub_rows(name, split)]
            path = Path(out) / LOCAL[name].format(split=split)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(".part-" + path.name)  # same suffix: read_records tells JSON from JSONL by it
            try:
                text = json.dumps(rows, ensure_ascii=False) if path.suffix == ".json" else \
                    "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            except TypeError as e:  # e.g. an image column: not a benchmark we read
                raise DataError(f"{HUB[name][0]}: a row holds a value JSON cannot store ({e})") from None
            tmp.write_text(text, encoding="utf-8")
            for n, row in read_records(tmp):  # a row the converter cannot read raises DataError here, not later
                CONVERTERS[name](row, f"{path}:{n}", n - 1)
            tmp.replace(path)
            written.append((path, len(rows)))
    return written


def main(argv=None) -> int:
    """`python data.py download --out DIR [--benchmarks gsm8k,math,...]`: the local layout from the Hub."""
    import argparse

    parser = argparse.ArgumentParser(prog="data.py", description="benchmark files")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="write the layout of shared/data from the Hugging Face Hub")
    get.add_argument("--out", required=True, help="folder to write (then pass it as --data_dir / --data-dir)")
    get.add_argument("--benchmarks", default=",".join(LOCAL), help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    try:
        for path, count in download(args.out, [n.strip() for n in args.benchmarks.split(",") if n.strip()]):
            print(f"[data] {path}: {count} rows", flush=True)
    except DataError as e:
        print(f"data.py: {e}", file=sys.stderr)
        return 2
    return 0


# ----------------------------------------------------------------------------------------------------------
# Synthetic arithmetic word problems: difficulty known by construction
# ----------------------------------------------------------------------------------------------------------
# OURS: the demo and the tests need data that is offline, tiny and whose difficulty is known, so that the
# self-ranked difficulty D_q (irt.py) can be checked against the truth. A level-k problem takes k arithmetic
# steps; each step is one sentence and one line of the worked solution.

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kira", "Liam"]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells"]


def _step(rng: random.Random, value: int, name: str, item: str) -> tuple[int, str, str]:
    """One reasoning step: (new value, sentence of the story, line of the solution)."""
    kinds = ["add", "sub", "mul"] if value <= 30 else ["add", "sub"]
    kind = rng.choice(kinds if value > 1 else ["add", "mul"])
    if kind == "add":
        k = rng.randint(2, 9)
        return value + k, f"Then {name} gets {k} more {item}.", f"{value} + {k} = {value + k}"
    if kind == "sub":
        k = rng.randint(1, min(9, value - 1))
        return value - k, f"Then {name} gives away {k} {item}.", f"{value} - {k} = {value - k}"
    k = rng.randint(2, 3)
    word = {2: "doubles", 3: "triples"}[k]
    return value * k, f"Then {name} {word} the number of {item}.", f"{value} * {k} = {value * k}"


def synthetic_problem(rng: random.Random, steps: int, index: int) -> dict:
    """One word problem that takes exactly `steps` arithmetic steps."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, 12)
    story, solution = [f"{name} has {value} {item}."], []
    for _ in range(steps):
        value, sentence, line = _step(rng, value, name, item)
        story.append(sentence)
        solution.append(line)
    story.append(f"How many {item} does {name} have now?")
    worked = "\n".join(solution) + f"\nThe answer is $\\boxed{{{value}}}$."
    return _record(f"synthetic-{steps}-{index}", " ".join(story), value, solution=worked, level=steps,
                   benchmark="synthetic")


def synthetic_problems(n: int, seed: int = 0, levels=(1, 2, 3, 4, 5)) -> list[dict]:
    """`n` problems, levels cycling through `levels`; the same seed gives the same problems.

    >>> p = synthetic_problems(2, seed=0, levels=(1,))[0]
    >>> p["meta"]["level"], p["kind"], p["answer"] == p["meta"]["solution"].split("{")[-1].split("}")[0]
    (1, 'math', True)
    """
    rng = random.Random(seed)
    return [synthetic_problem(rng, levels[i % len(levels)], i) for i in range(n)]


# ----------------------------------------------------------------------------------------------------------
# The ladder: five levels of difficulty that the embedded SmolLM2-135M spans (issue 13)
# ----------------------------------------------------------------------------------------------------------
# OURS: the synthetic word problems sit outside the 135M model's ability (greedy 12.5 % at one step), so GRPO
# rarely sees a group with mixed rewards and IRT sees one ability. The ladder runs from sums the model mostly
# gets right to word problems it mostly gets wrong; its level is known by construction, so it is also the
# control of self-ranked difficulty (irt.py, --difficulty level). Levels 1-4 end with "Give only the number.":
# with it the model often answers "2 + 4 = 6" instead of a paragraph that drifts to another number (all 36 sums
# of level 1, greedy: 53 % with it, 33 % with each of "... no steps.", "2 + 4 = ?", "2 plus 4", "Answer with
# one number."; the bare "What is a + b?" was 21 % on 24 one-digit sums). Levels are
# ordered by the accuracy measured with 96 new tokens: "23 - 5" came out harder than "47 + 38" (the model mixes up
# + and -); with the demo's 48 tokens level 3 is the lowest of 1-4 (its rambling answers are cut before the sum).
# Held out: every question is on one side of a fixed split by the hash of its text (a third on the test side,
# `in_test_split`), so no test question is ever trained on, even at levels 1 and 2 with their 36 and 45 sums.
# SmolLM2-135M-Instruct, evaluate.test_prompt, held-out questions (`make ladder-probe`, 2026-12-03, 2 cores):
#     level                                  1      2      3      4      5
#     greedy accuracy, 48 tokens, 48/level  69 %   50 %    0 %   13 %    4 %
#     T 0.7, 32 tokens (the demo's samples), G 8, 16/level:
#       sampled accuracy                    35 %    9 %    2 %    5 %    5 %
#       groups with mixed rewards           75 %   69 %   19 %   19 %   19 %

LADDER_LEVELS = {1: "one-digit sum below 10 (2 + 4)", 2: "one-digit sum of 10 or more (7 + 8)",
                 3: "two-digit sum (47 + 38)", 4: "two-digit plus or minus one-digit (23 - 5)",
                 5: "three-step word problem (the synthetic task, 3 steps)"}
LADDER_SUFFIX = "Give only the number."
ONE_DIGIT_SUMS = {1: [(a, b) for a in range(1, 10) for b in range(1, 10) if a + b <= 9],    # 36 pairs
                  2: [(a, b) for a in range(1, 10) for b in range(1, 10) if a + b >= 10]}   # 45 pairs


def _sum_record(level: int, index: int, a: int, b: int, sign: str = "+") -> dict:
    value = a + b if sign == "+" else a - b
    worked = f"{a} {sign} {b} = {value}\nThe answer is $\\boxed{{{value}}}$."
    return _record(f"ladder-{level}-{index}", f"What is {a} {sign} {b}? {LADDER_SUFFIX}", value, solution=worked,
                   level=level, benchmark="ladder")


def in_test_split(question: str) -> bool:
    """Which side of the ladder's train/test split a question is on: a third of all questions, by a hash of the
    text (crc32: the same on every machine and Python, unlike hash()), uncorrelated with the answer.

    >>> [in_test_split(f"What is {a} + 4? Give only the number.") for a in range(1, 6)]
    [False, False, False, True, False]
    """
    return zlib.crc32(question.encode("utf-8")) % 3 == 0


def _ladder_draw(rng: random.Random, level: int, index: int) -> dict:
    if level in (1, 2):  # uniform over the 36 sums of the level (a uniform first term would favour 8 + 1)
        return _sum_record(level, index, *rng.choice(ONE_DIGIT_SUMS[level]))
    if level == 3:
        return _sum_record(level, index, rng.randint(10, 99), rng.randint(10, 99))
    if level == 4:  # measured harder than level 3 for SmolLM2-135M (it subtracts where it should add, and back)
        return _sum_record(level, index, rng.randint(10, 99), rng.randint(1, 9), rng.choice("+-"))
    if level == 5:
        record = synthetic_problem(rng, 3, index)
        record["id"] = f"ladder-5-{index}"
        record["meta"].update(level=5, steps=3, benchmark="ladder")
        return record
    raise ValueError(f"ladder level must be one of {sorted(LADDER_LEVELS)}, got {level!r}")


def ladder_problem(rng: random.Random, level: int, index: int, split: str | None = None) -> dict:
    """One question of ladder level 1-5 (see LADDER_LEVELS); the answer is a non-negative integer. `split`
    "test" or "train" draws until the question is on that side of `in_test_split`; None takes any question."""
    while True:
        record = _ladder_draw(rng, level, index)
        if split is None or in_test_split(record["question"]) == (split == "test"):
            return record


def ladder_problems(n: int, seed: int = 0, levels=tuple(LADDER_LEVELS), split: str | None = None) -> list[dict]:
    """`n` ladder questions, levels cycling through `levels` (balanced); the same seed gives the same questions.
    `split` ("test", "train" or None = either) keeps the test questions out of training (`in_test_split`).

    >>> [(p["question"], p["answer"], p["meta"]["level"]) for p in ladder_problems(2, seed=0, levels=(1, 4))]
    [('What is 4 + 4? Give only the number.', '8', 1), ('What is 63 - 1? Give only the number.', '62', 4)]
    >>> [p["question"] for p in ladder_problems(2, seed=0, levels=(1,), split="test")]
    ['What is 4 + 4? Give only the number.', 'What is 5 + 1? Give only the number.']
    """
    if split not in (None, "test", "train"):
        raise ValueError(f"ladder split must be 'test', 'train' or None, got {split!r}")
    rng = random.Random(seed)
    return [ladder_problem(rng, levels[i % len(levels)], i, split) for i in range(n)]


if __name__ == "__main__":
    sys.exit(main())
