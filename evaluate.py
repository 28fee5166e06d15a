"""
evaluate.py — evaluate one model ALONE on the paper's benchmarks, and grade answers (the training reward).

Where it sits in ILR (arXiv 2509.26306): after co-training, the paper evaluates each model on its own, pass@1
with one greedy sample per question, on GSM8K, MATH-500, Minerva Math, OlympiadBench and AIME 2024+2025 (their
plain mean is "Avg") and on MBPP (code, out of domain). The same grading function is the reward of training:
ilr -> irt -> idea3 -> **evaluate.reward** -> grpo -> ilr.

    python evaluate.py --model smollm2-135m --benchmarks gsm8k,math500 --limit 100       # benchmarks from the Hub
    python evaluate.py --oracle gold --benchmarks paper --data-dir data/   # check the grader, no model (local copy)
    python evaluate.py --model smollm2-135m --benchmarks mbpp --samples 8 --temperature 0.8   # pass@1..8
    .venv/bin/python -m pytest tests/test_evaluate.py tests/test_sandbox.py --doctest-modules evaluate.py sandbox.py

    import evaluate
    evaluate.reward(completion, record)            # 1.0 / 0.0, math or code
    evaluate.grade_math(r"... \\boxed{\\frac12}", "0.5")   # Grade(correct=True, extracted='\\frac12', ...)
    evaluate.evaluate_model(model, tokenizer, records, max_new_tokens=512)   # -> summary dict

Pipeline per benchmark: records (data.load_benchmark) -> test-time prompt (PROMPTS) -> llm.generate (batched,
length-sorted, stops at EOS) -> grade (math: extract + compare; code: sandbox.py) -> one JSONL line per item,
written as its chunk finishes -> summary JSON and a results table.

Choices (the paper states none of these; ours, each in one place):
1. Prompts (`PROMPTS`): math asks for step-by-step reasoning and the final answer in \\boxed{}; code gives the
   MBPP problem text and its first test (the usual MBPP protocol) and asks for a function in a ```python block.
   Both are sent as one user message through the model's chat template (llm.generate).
2. Which answer is graded (`extract_answer`), first that applies: the LAST \\boxed{} / \\boxed x / \\fbox{} /
   \\framebox{} (nested braces kept); else the last "#### X" line (GSM8K's own format); else the last
   "the (final) answer is X"; else, only for benchmarks whose answers are plain numbers (gsm8k, synthetic, ladder:
   `LAST_NUMBER_BENCHMARKS`), the last number in the text. Elsewhere a bare number is too easy to hit by chance
   (an AIME answer among the numbers of a derivation), so no box, no answer.
3. Equivalence (`answers_match`): light normalisation (`normalize_answer`: $, \\%, \\dfrac, \\left/\\right, degree
   signs, thousands separators, units written as words or \\text{}), then plain numbers are compared as numbers
   (025 = 25, 27.0 = 27; exact for two integers, else relative tolerance 1e-4 as in Qwen2.5-Math's
   `math_equal`), everything else by math-verify: `verify(gold, prediction)` — the order matters, math-verify's
   docstring says the function is not symmetric (assignments like `x = 2` and intervals are handled on the
   gold side). Several answers (OlympiadBench `meta["answers"]`, or `meta["multiple"]`) are compared as a
   multiset: any order.
4. math-verify's own timeouts (`parsing_timeout`, `timeout_seconds`, default 5 s) use signal.alarm: they only
   work in the main thread and raise ValueError in any other thread. In the main thread we pass
   `MATH_VERIFY_TIMEOUT` (5 s, its default), after one warm-up parse without a timeout (the first parse loads
   sympy's LaTeX parser); from other threads the comparison runs in a helper process (spawned once) whose main
   thread has the timeouts. Strings longer than `MAX_ANSWER_CHARS` never reach math-verify, and any exception
   is caught: the grader never raises (an unexpected error is graded incorrect, reason "grader_error").
5. Code (`grade_code`): the last ```python block that defines the function the tests call (else the first
   block; an unterminated block counts; else the whole text if it parses), then the benchmark's setup code, run
   by sandbox.run_code; then its asserts, each on its own against clean builtins with plain-data results
   (sandbox.py: reward hacks). The setup code goes AFTER the candidate code because MBPP's two setup snippets
   build `Node` objects of the class the solution defines.
6. Scores: pass@1 greedy by default; with --samples K, pass@k for k = 1, 2, 4, ..., K with the unbiased
   estimator of Chen et al. (2021) (`pass_at_k`). AIME 2024 and 2025 are pooled into one 60-problem row
   ("aime"); "Avg" = mean of gsm8k, math500, minerva_math, olympiadbench and aime, as in the paper, shown only
   when all five ran.
7. --oracle gold grades the gold solution as if a model had written it: MBPP's reference code in a ```python
   block; for math the worked solution if it contains a final-answer marker the graders read (a box or
   "####"), else "The final answer is $\\boxed{gold}$". --oracle shuffled grades the gold solution of another
   problem of the same benchmark (a seeded derangement): it should score ~0.
8. Each model alone is the paper's test protocol. Models answering together (single / debate / Idea3, the
   paper's Table 4) are multi-agent inference: `python idea3.py eval --mode debate|idea3 --model a,b` (idea3.py
   imports this module for the prompt and the grader; this module imports no other agent code).
"""

from __future__ import annotations

import ast
import atexit
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import data
import sandbox

# ----------------------------------------------------------------------------------------------------------
# 0) Constants: prompts, benchmark groups, grader limits
# ----------------------------------------------------------------------------------------------------------

PROMPTS = {
    "math": ("Solve the following math problem. Reason step by step, and put your final answer within "
             "\\boxed{{}}.\n\n{question}"),
    "code": ("{question}\nYour code should pass this test:\n{test}\n"
             "Write the Python function in a ```python code block."),
}
PAPER_MATH = ("gsm8k", "math500", "minerva_math", "olympiadbench", "aime")   # the five of the paper's "Avg"
POOLED = {"aime": ("aime24", "aime25")}                                       # PAPER: AIME 2024+2025, 60 problems
ALIASES = {"aime": ["aime24", "aime25"],
           "paper": ["gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "aime25", "mbpp"]}
LAST_NUMBER_BENCHMARKS = {"gsm8k", "synthetic", "ladder"}   # OURS: answers are plain numbers, so the last number counts
MATH_VERIFY_TIMEOUT = 5        # s per math-verify parse / comparison, its default (signal-based: main thread)
MAX_ANSWER_CHARS = 1000        # longer answers are compared as strings only (guards math-verify / sympy)
NUMBER_REL_TOL = 1e-4          # as Qwen2.5-Math's math_equal; two integers are compared exactly
MATH_REASONS = ("passed", "wrong", "no_answer", "grader_error")
DEVICES = ("auto", "cuda", "mps", "cpu")   # = llm.DEVICES, repeated: the grader imports no torch (tests/test_precision)


class Grade(NamedTuple):
    """One graded completion. `reason`: math passed | wrong | no_answer | grader_error; code: sandbox.REASONS
    or no_code. `extracted`: the answer (math) or code (code) that was graded, None if none was found."""
    correct: bool
    extracted: str | None
    reason: str
    detail: str = ""


def test_prompt(record: dict) -> str:
    """The test-time prompt of a record (one user message; the chat template is applied by llm.generate).

    >>> test_prompt({"kind": "math", "question": "What is 1+1?"}).endswith("What is 1+1?")
    True
    """
    if record["kind"] == "code":
        return PROMPTS["code"].format(question=record["question"].strip(), test=record["meta"]["tests"][0])
    return PROMPTS["math"].format(question=record["question"].strip())


test_prompt.__test__ = False   # a public name starting with "test": tell pytest it is not a test


# ----------------------------------------------------------------------------------------------------------
# 1) Math: which answer is graded
# ----------------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")

# The last \boxed{} / \fbox{} / \framebox{} answer: ONE definition, shared with the format reward (ilr.well_formed)
# and the gold answers of data.py. An empty box ('') holds no answer (extract_answer goes on to the next rule).
extract_boxed = data.last_boxed


def extract_answer(completion: str, benchmark: str | None = None) -> tuple[str | None, str]:
    """(answer text, how it was found). `how` is boxed | hashes | answer_is | last_number | none.

    >>> extract_answer("6 * 7 = 42.\\n#### 42")
    ('42', 'hashes')
    >>> extract_answer("So the answer is $3/4$.")
    ('3/4', 'answer_is')
    >>> extract_answer("She has 1,200 apples.", "gsm8k"), extract_answer("She has 1,200 apples.", "math500")
    (('1200', 'last_number'), (None, 'none'))
    """
    boxed = extract_boxed(completion)
    if boxed:
        return boxed, "boxed"
    hashes = re.findall(r"####\s*(.+)", completion)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip(), "hashes"
    stated = re.findall(r"(?i)\b(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", completion)
    if stated:
        answer = stated[-1].strip().rstrip(".").strip().strip("$").strip()
        if answer:
            return answer, "answer_is"
    if benchmark in LAST_NUMBER_BENCHMARKS:
        numbers = _NUMBER.findall(completion)
        if numbers:
            return numbers[-1].replace(",", "").rstrip("."), "last_number"
    return None, "none"


# ----------------------------------------------------------------------------------------------------------
# 2) Math: are two answers the same?
# ----------------------------------------------------------------------------------------------------------

_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim", "max", "min"}
_UNIT = r"(?:\\(?:text|textrm|mathrm|mbox|rm)\s*\{[^{}]*\}|[A-Za-z]{2,}\.?)(?:\^\{?-?\d+\}?)?"


def _strip_units(s: str) -> str:
    """'10 \\text{ cm}^2' -> '10', '12 apples' -> '12'; a number times a math word ('2 pi') is kept."""
    match = re.fullmatch(rf"({_NUM})\s*((?:{_UNIT}\s*)+)", s)
    if not match:
        return s
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\\[A-Za-z]+", " ", match.group(2)))}
    return s if words & _MATH_WORDS else match.group(1)


def normalize_answer(answer: str) -> str:
    r"""Light, meaning-preserving clean-up before comparison.

    >>> [normalize_answer(a) for a in [r"\$1,000", r"\dfrac{1}{2}.", r"90^\circ", r"\text{Monday}", "8\\%"]]
    ['1000', '\\frac{1}{2}', '90', 'Monday', '8']
    >>> normalize_answer(r"10 \text{ cm}^2"), normalize_answer(r"\left( 3, \frac{\pi}{2} \right)")
    ('10', '( 3, \\frac{\\pi}{2} )')
    """
    s = str(answer).strip()
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])", "", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    s = re.sub(r"\\[!,;:]|\\ ", "", s).replace("{,}", ",").replace("~", " ")     # thin spaces: 1\,000
    s = s.strip().rstrip(".").strip()
    while True:                                                 # a whole-answer \text{...} wrapper
        match = re.fullmatch(r"\\(?:text|textbf|textrm|mathrm|mbox|mathbf)\s*\{(.*)\}", s)
        if not match or data.braced(s, s.index("{")) is None or data.braced(s, s.index("{"))[1] != len(s):
            break
        s = match.group(1).strip().rstrip(".").strip()            # \text{Monday.} is Monday
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):      # thousands separators
        s = s.replace(",", "")
    return _strip_units(s)


def parse_number(s: str) -> Fraction | float | None:
    r"""A plain number: integer (leading zeros allowed), decimal, a/b, \frac{a}{b}, scientific; else None.

    >>> parse_number("025"), parse_number("27.0"), parse_number(r"-\frac{3}{6}"), parse_number("x")
    (Fraction(25, 1), Fraction(27, 1), Fraction(-1, 2), None)
    """
    s = s.replace(" ", "")
    try:
        if re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", s):
            return Fraction(s)
        if re.fullmatch(_NUM, s):
            return float(s)
        match = re.fullmatch(r"(-?)(?:\\frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+))", s)
        if match:
            top, bottom = (match.group(2), match.group(3)) if match.group(2) else (match.group(4), match.group(5))
            return Fraction(int(top), int(bottom)) * (-1 if match.group(1) else 1)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def numbers_equal(a, b) -> bool:
    """Exact for two integers, else relative tolerance NUMBER_REL_TOL.

    >>> numbers_equal(Fraction(25), Fraction(25)), numbers_equal(Fraction(1, 3), 0.33333), numbers_equal(12345, 12346)
    (True, True, False)
    """
    if all(isinstance(x, int) or isinstance(x, Fraction) and x.denominator == 1 for x in (a, b)):
        return a == b
    try:
        return math.isclose(float(a), float(b), rel_tol=NUMBER_REL_TOL, abs_tol=1e-12)
    except OverflowError:
        return a == b


def split_top_level(s: str) -> list[str]:
    r"""Split at commas outside (), [], {} — the items of a list answer.

    >>> split_top_level(r"(1,2), (3,4), \frac{1}{2}")
    ['(1,2)', '(3,4)', '\\frac{1}{2}']
    """
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
        if ch == "," and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    parts.append(s[start:].strip())
    return [p for p in parts if p]


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_parsed: dict = {}


@lru_cache(maxsize=1)
def _math_verify():
    """Import math-verify and warm it up once WITHOUT a timeout: the first parse loads sympy's LaTeX parser,
    which under a loaded CPU takes longer than a timeout meant for one comparison."""
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)   # its timeout warnings would flood the console
    math_verify.parse("\\boxed{\\frac{1}{2}+x}", parsing_timeout=None)
    return math_verify


def _mv_parse(text: str):
    """math-verify parse of `text` put in a box (so its LaTeX extractor reads the whole answer). Successful
    parses are cached (gold answers repeat across samples); a failure or timeout is not, so load cannot stick."""
    if text in _parsed:
        return _parsed[text]
    result = _math_verify().parse("\\boxed{" + text + "}", parsing_timeout=MATH_VERIFY_TIMEOUT)
    if result and len(_parsed) < 65536:
        _parsed[text] = result
    return result


def math_verify_equal(gold: str, prediction: str) -> bool:
    """math-verify's verdict, gold FIRST: verify(gold, prediction) is not symmetric. Never raises.

    In the main thread math-verify's own signal.alarm timeouts bound each parse / comparison. They cannot work
    in other threads (an answer like 9^{9^{9^{9}}} then runs for ever), so there the call goes to a helper
    process, whose main thread has the timeouts (`_verify_in_helper`)."""
    if len(gold) > MAX_ANSWER_CHARS or len(prediction) > MAX_ANSWER_CHARS:
        return False
    if not _in_main_thread():
        return _verify_in_helper(gold, prediction)
    from math_verify.errors import TimeoutException   # a BaseException: `except Exception` would miss it

    try:
        gold_parsed, pred_parsed = _mv_parse(gold), _mv_parse(prediction)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(_math_verify().verify(gold_parsed, pred_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT))
    except (Exception, TimeoutException):
        return False


_helper, _helper_lock = None, threading.Lock()


def _exit_with_parent(parent: int) -> None:
    """The helper process's initializer: a daemon thread ends the helper as soon as its parent is gone. A parent
    killed outright (SIGKILL, the OOM killer, os._exit) runs no atexit, and an orphaned helper would otherwise
    wait for work for ever, holding ~200 MB (seen: 110 of them after a mutation-testing run)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _verify_in_helper(gold: str, prediction: str) -> bool:
    """math_verify_equal in a one-process pool (spawned once, lazily). If it does not answer in time (start-up
    included), it is killed and replaced, and the answer is graded incorrect."""
    global _helper
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _helper_lock:
        if _helper is None:
            _helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_exit_with_parent, initargs=(os.getpid(),))
            atexit.register(_helper.shutdown, wait=False, cancel_futures=True)
        pool = _helper
    try:
        return bool(pool.submit(math_verify_equal, gold, prediction).result(timeout=4 * MATH_VERIFY_TIMEOUT + 20))
    except Exception:
        with _helper_lock:
            if _helper is pool:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                _helper = None
        return False


def answers_match(gold: str, prediction: str) -> bool:
    r"""One gold answer vs one predicted answer.

    >>> [answers_match(g, p) for g, p in [("0.5", r"\frac{1}{2}"), ("025", "25"), ("27.0", "27"), ("1000", "1,000")]]
    [True, True, True, True]
    >>> answers_match("12", "13"), answers_match(r"\frac{\sqrt{2}}{2}", r"\dfrac{\sqrt2}{2}")
    (False, True)
    """
    g, p = normalize_answer(gold), normalize_answer(prediction)
    if not p:
        return False
    if g == p:
        return True
    g_number, p_number = parse_number(g), parse_number(p)
    if g_number is not None and p_number is not None:
        return numbers_equal(g_number, p_number)
    return math_verify_equal(g, p)


def lists_match(golds: Sequence[str], prediction: str) -> bool:
    """Several gold answers vs a comma-separated prediction, in any order (a multiset match).

    >>> lists_match(["-1", "2"], "2, -1"), lists_match(["-1", "2"], "2"), lists_match(["(1,2)", "(3,4)"], "(3,4),(1,2)")
    (True, False, True)
    """
    predictions = split_top_level(normalize_answer(prediction))
    if len(predictions) != len(golds):
        return False
    left = list(predictions)
    for gold in golds:
        hit = next((p for p in left if answers_match(gold, p)), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


# ----------------------------------------------------------------------------------------------------------
# 3) Grading: math, code, either (the training reward)
# ----------------------------------------------------------------------------------------------------------

def grade_math(completion: str, gold: str, benchmark: str | None = None, answers: Sequence[str] | None = None,
               multiple: bool = False) -> Grade:
    r"""Grade a math completion against the gold answer. Fast, and never raises.

    `answers` (OlympiadBench `meta["answers"]`) and `multiple` (`meta["multiple"]`) make it a list answer,
    compared in any order; `benchmark` turns on the last-number fallback for gsm8k / synthetic.

    >>> grade_math(r"... so $\boxed{\dfrac{1}{2}}$.", "0.5")
    Grade(correct=True, extracted='\\dfrac{1}{2}', reason='passed', detail='boxed')
    >>> grade_math("I don't know.", "7").reason
    'no_answer'
    """
    try:
        if not isinstance(completion, str) or not completion.strip():
            return Grade(False, None, "no_answer", "empty completion")
        prediction, how = extract_answer(completion, benchmark)
        if prediction is None:
            return Grade(False, None, "no_answer", "no \\boxed{}, '####' or 'the answer is'")
        golds = [str(a) for a in answers] if answers else [str(gold)]
        if multiple:
            golds = [part for g in golds for part in split_top_level(normalize_answer(g))]
        correct = answers_match(golds[0], prediction) if len(golds) == 1 else \
            lists_match(golds, prediction) or answers_match(", ".join(golds), prediction)
        return Grade(correct, prediction, "passed" if correct else "wrong", how)
    except Exception as e:            # the reward must never crash training: an unexpected error is "incorrect"
        return Grade(False, None, "grader_error", f"{type(e).__name__}: {e}"[:300])


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The code to run: the last ```python block defining `entry_point` (else the first block; an unterminated
    block counts), else the whole completion if it parses as Python; None if there is no code.

    >>> extract_code("Here:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.")
    'def f(x):\\n    return x\\n'
    >>> extract_code("def f(): return 1"), extract_code("no code here, sorry")
    ('def f(): return 1', None)
    """
    blocks = re.findall(r"```[ \t]*(?:python3?|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", completion, re.S)
    blocks = [b for b in blocks if b.strip()]
    if blocks:
        defining = [b for b in blocks if entry_point and re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
        return defining[-1] if defining else blocks[0]
    try:
        ast.parse(completion)
    except (SyntaxError, ValueError):
        return None
    return completion if re.search(r"\b(def|class|import|lambda)\b", completion) else None


def code_program(code: str, record: dict) -> tuple[str, str]:
    """(program, tests): the candidate code then the benchmark's setup code (it may use the candidate's classes);
    and all the asserts, which the sandbox runs afterwards against clean builtins, comparing plain data only.

    >>> code_program("def f(): return 1", {"meta": {"tests": ["assert f() == 1"], "setup_code": "import math"}})
    ('def f(): return 1\\n\\nimport math\\n', 'assert f() == 1\\n')
    """
    meta = record["meta"]
    return "\n\n".join([code, meta.get("setup_code") or ""]) + "\n", "\n".join(meta["tests"]) + "\n"


def grade_code(completion: str, record: dict, **sandbox_kwargs) -> Grade:
    """Run the extracted code and the record's asserts in the sandbox; correct = every assert passed. Limits too
    small for any program (sandbox.check_limits) raise ValueError: grading everything wrong would hide them."""
    sandbox.check_limits(sandbox_kwargs.get("memory_mb", sandbox.DEFAULT_MEMORY_MB),
                         sandbox_kwargs.get("timeout", sandbox.DEFAULT_TIMEOUT))
    try:
        code = extract_code(completion or "", record["meta"].get("entry_point"))
        if code is None:
            return Grade(False, None, "no_code", "no code block and the text is not Python")
        program, tests = code_program(code, record)
        result = sandbox.run_code(program, tests, **sandbox_kwargs)
        return Grade(result.passed, code, result.reason, result.message)
    except Exception as e:
        return Grade(False, None, "grader_error", f"{type(e).__name__}: {e}"[:300])


def grade_record(completion: str, record: dict, **sandbox_kwargs) -> Grade:
    """Grade a completion for a data.py record of either kind."""
    if record["kind"] == "code":
        return grade_code(completion, record, **sandbox_kwargs)
    meta = record.get("meta", {})
    return grade_math(completion, record["answer"], meta.get("benchmark"), meta.get("answers"),
                      bool(meta.get("multiple")))


def grade_many(completions: Sequence[str], records: Sequence[dict], workers: int | None = None,
               **sandbox_kwargs) -> list[Grade]:
    """grade_record for many (completion, record) pairs: code in parallel sandboxes (`workers` at a time),
    math in the calling thread (so math-verify's timeouts work when that is the main thread)."""
    grades: list = [None] * len(completions)
    code = [i for i, r in enumerate(records) if r["kind"] == "code"]
    if code:
        from concurrent.futures import ThreadPoolExecutor
        sandbox.isolation()                              # probe the machine once, before the threads start
        with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool:
            for i, grade in zip(code, pool.map(lambda i: grade_code(completions[i], records[i], **sandbox_kwargs),
                                               code)):
                grades[i] = grade
    for i, record in enumerate(records):
        if grades[i] is None:
            grades[i] = grade_record(completions[i], record)
    return grades


def reward(completion: str, record: dict) -> float:
    """The training reward: 1.0 if the completion is graded correct, else 0.0 (math or code).

    >>> reward("The answer is \\\\boxed{4}.", {"kind": "math", "answer": "4", "meta": {}})
    1.0
    """
    return 1.0 if grade_record(completion, record).correct else 0.0


# ----------------------------------------------------------------------------------------------------------
# 4) pass@k
# ----------------------------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", Eq. 1):  pass@k = 1 - C(n - c, k) / C(n, k), computed as a stable product.

    >>> pass_at_k(1, 1, 1), pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 3, 2), pass_at_k(5, 0, 3)
    (1.0, 0.25, 0.5, 1.0, 0.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:                                      # every k-subset contains a correct sample
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):                  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        product *= 1.0 - k / i
    return 1.0 - product


def report_ks(samples: int) -> list[int]:
    """k values reported for `samples` per problem: 1, 2, 4, ... and samples itself.

    >>> report_ks(1), report_ks(10)
    ([1], [1, 2, 4, 8, 10])
    """
    return sorted({2 ** i for i in range(samples.bit_length()) if 2 ** i <= samples} | {samples})


# ----------------------------------------------------------------------------------------------------------
# 5) Oracle completions: check the grader with no model
# ----------------------------------------------------------------------------------------------------------

def oracle_completion(record: dict) -> str:
    """The gold solution written as a model would: code in a block; math = the worked solution if it has a
    final-answer marker the grader reads (box / ####), else the gold answer in a box."""
    if record["kind"] == "code":
        return f"```python\n{record['answer']}\n```"
    solution = record.get("meta", {}).get("solution") or ""
    if extract_boxed(solution) or re.search(r"####\s*\S", solution):
        return solution
    return f"The final answer is $\\boxed{{{record['answer']}}}$."


def derangement(n: int, seed: int = 0) -> list[int]:
    """partner[i] != i for every i (n >= 2): a seeded shuffle, each element paired with the next one.

    >>> p = derangement(5); sorted(p) == list(range(5)) and all(p[i] != i for i in range(5))
    True
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    partner = [0] * n
    for j, i in enumerate(order):
        partner[i] = order[(j + 1) % n]
    return partner


def oracle_completer(records: Sequence[dict], oracle: str, seed: int = 0) -> Callable:
    """complete(batch of records, n) -> (texts, token counts, finished), each [b][n]: the gold solutions
    ('gold') or those of other problems ('shuffled'). Token counts are 0: no model ran."""
    if oracle not in ("gold", "shuffled"):
        raise ValueError(f"--oracle must be 'gold' or 'shuffled', got {oracle!r}")
    index = {r["id"]: i for i, r in enumerate(records)}
    partner = derangement(len(records), seed) if len(records) > 1 else [0]

    def complete(batch, n):
        pick = (lambda r: r) if oracle == "gold" else (lambda r: records[partner[index[r["id"]]]])
        return [[oracle_completion(pick(r))] * n for r in batch], [[0] * n for _ in batch], [[True] * n for _ in batch]
    return complete


# ----------------------------------------------------------------------------------------------------------
# 6) Running: generate (or oracle) -> grade -> JSONL as items finish -> summary
# ----------------------------------------------------------------------------------------------------------

def model_completer(model, tokenizer, samples: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                    max_new_tokens: int = 512, batch_size: int = 16, seed: int | None = 0) -> Callable:
    """complete(batch of records, n) -> (texts [b][n], token counts [b][n], finished [b][n]) via llm.generate."""
    import llm

    def complete(batch, n):
        out = llm.generate(model, tokenizer, [test_prompt(r) for r in batch], n=n, temperature=temperature,
                           top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
        return out.texts, [[len(c) for c in row] for row in out.completion_ids], out.finished
    return complete


def read_jsonl(path) -> list[dict]:
    """Lines of a results file; a torn last line (interrupted write) is skipped."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


class ResultsError(ValueError):
    """A results file that cannot be continued; the message is one line naming the file and line."""


def read_results(path) -> list[dict]:
    """The rows of a results file for --resume: each line an object with an "id", its "n" samples (>= 1) and
    "num_correct" (0..n). A torn last line is skipped; any other line that is not such a row is an
    error naming the file and line, rather than a traceback or a wrong pass@k.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.jsonl")
    >>> _ = open(path, "w").write('{"id": "1", "n": 1, "num_correct": 1}\\n[1, 2]\\n')
    >>> try:
    ...     read_results(path)
    ... except ResultsError as e:
    ...     print(str(e).rsplit("/", 1)[1])
    r.jsonl:2: expected a result object with "id", "n" >= 1 and "num_correct" in 0..n, got [1, 2]
    """
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if number == len(lines):                 # torn by an interrupted write: redone
                break
            raise ResultsError(f"{path}:{number}: not JSON; a results file has one JSON object per line") from None
        rows.append(row)
        ok = isinstance(row, dict) and "id" in row and isinstance(row.get("n"), int) and row["n"] >= 1 \
            and isinstance(row.get("num_correct"), int) and 0 <= row["num_correct"] <= row["n"]
        if not ok:
            raise ResultsError(f"{path}:{number}: expected a result object with \"id\", \"n\" >= 1 and "
                               f"\"num_correct\" in 0..n, got {json.dumps(row)[:80]}")
    return rows


def drop_torn_tail(path) -> None:
    """Cut a half-written last line (an interrupted run) so that appended lines start on a fresh line."""
    path = Path(path)
    if path.exists():
        content = path.read_bytes()
        if content and not content.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(content.rfind(b"\n") + 1)


def item_row(record: dict, prompt: str, texts: list[str], grades: list[Grade], tokens: list[int],
             finished: list[bool]) -> dict:
    """One JSONL line: the first sample's fields at top level, all samples under "samples" when n > 1."""
    first, n, c = grades[0], len(grades), sum(g.correct for g in grades)
    row = {"id": record["id"], "benchmark": record.get("meta", {}).get("benchmark"), "kind": record["kind"],
           "level": record.get("meta", {}).get("level"), "prompt": prompt, "gold": record["answer"],
           "completion": texts[0], "extracted": first.extracted, "correct": first.correct,
           "reason": first.reason, "detail": first.detail, "completion_tokens": tokens[0],
           "finished": finished[0], "n": n, "num_correct": c}
    if n > 1:
        row["samples"] = [{"completion": t, "extracted": g.extracted, "correct": g.correct, "reason": g.reason,
                           "detail": g.detail, "completion_tokens": k, "finished": f}
                          for t, g, k, f in zip(texts, grades, tokens, finished)]
    return row


def evaluate_records(records: Sequence[dict], complete: Callable, samples: int = 1, out_path=None,
                     resume: bool = False, chunk_size: int = 64, progress: bool = False, workers: int | None = None,
                     name: str | None = None, **sandbox_kwargs) -> dict:
    """Grade `complete`'s answers to `records` (samples per record), appending one JSONL line per record to
    `out_path` as each chunk finishes; with `resume`, records already in the file are skipped. Returns the
    summary over all records in the file (or in memory when out_path is None)."""
    from tqdm.auto import tqdm

    done = {row["id"]: row for row in read_results(out_path)} if (out_path and resume) else {}
    if any(row["n"] != samples for row in done.values()):
        raise ResultsError(f"{out_path} holds results with another --samples; use another --out")
    if out_path and not resume and Path(out_path).exists() and Path(out_path).stat().st_size:
        raise FileExistsError(f"{out_path} exists: pass --resume to continue it, or choose another --out")
    todo = [r for r in records if r["id"] not in done]
    prompts = {r["id"]: test_prompt(r) for r in todo}
    todo.sort(key=lambda r: len(prompts[r["id"]]))                    # similar lengths share a chunk
    rows, start, tokens = dict(done), time.monotonic(), 0
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(out_path)
    bar = tqdm(total=len(todo), desc=name or "evaluate", unit="item", disable=not progress)
    for at in range(0, len(todo), chunk_size):
        batch = todo[at:at + chunk_size]
        texts, counts, finished = complete(batch, samples)                                  # [b][n]
        flat_grades = grade_many([t for row in texts for t in row], [r for r in batch for _ in range(samples)],
                                 workers=workers, **sandbox_kwargs)
        lines = []
        for b, record in enumerate(batch):
            grades = flat_grades[b * samples:(b + 1) * samples]
            row = item_row(record, prompts[record["id"]], texts[b], grades, counts[b], finished[b])
            rows[record["id"]] = row
            lines.append(json.dumps(row) + "\n")
            tokens += sum(counts[b])
        if out_path:
            with open(out_path, "a") as f:
                f.writelines(lines)
        bar.update(len(batch))
    bar.close()
    seconds = time.monotonic() - start
    ordered = [rows[r["id"]] for r in records if r["id"] in rows]
    summary = summarize(ordered, samples)
    summary.update(name=name, new_items=len(todo), seconds=round(seconds, 2), completion_tokens=tokens,
                   problems_per_minute=round(60 * len(todo) / seconds, 2) if todo and seconds > 0 else None)
    return summary


def summarize(rows: Sequence[dict], samples: int) -> dict:
    """pass@k (in %), outcome reasons and per-level accuracy of result rows."""
    n = len(rows)
    summary = {"items": n, "samples": samples}
    for k in report_ks(samples):
        summary[f"pass@{k}"] = round(100 * sum(pass_at_k(samples, r["num_correct"], k) for r in rows) / n, 2) \
            if n else None
    summary["reasons"] = dict(Counter(s["reason"] for r in rows for s in r.get("samples", [r])))
    levels = sorted({r["level"] for r in rows if r.get("level") is not None})
    if levels:
        summary["pass@1_by_level"] = {
            str(level): round(100 * sum(r["num_correct"] / samples for r in rows if r.get("level") == level)
                              / sum(1 for r in rows if r.get("level") == level), 2) for level in levels}
    if samples > 1 and n:  # the groups GRPO learns from: some of the K samples right, some wrong
        summary["mixed_share"] = mixed_share(rows, samples)
        if levels:
            summary["mixed_share_by_level"] = {str(level): mixed_share([r for r in rows if r.get("level") == level],
                                                                       samples) for level in levels}
    return summary


def mixed_share(rows: Sequence[dict], samples: int) -> float:
    """% of problems whose `samples` answers are neither all correct nor all wrong (0 < num_correct < K): a
    GRPO group of these answers has non-zero advantages, the others teach nothing.

    >>> mixed_share([{"num_correct": 0}, {"num_correct": 3}, {"num_correct": 8}, {"num_correct": 1}], 8)
    50.0
    """
    return round(100 * sum(0 < r["num_correct"] < samples for r in rows) / len(rows), 2)


def evaluate_model(model, tokenizer, records: Sequence[dict], samples: int = 1, temperature: float = 0.0,
                   top_p: float = 1.0, max_new_tokens: int = 512, batch_size: int = 16, out_path=None,
                   resume: bool = False, progress: bool = False, seed: int | None = 0, name: str | None = None,
                   **sandbox_kwargs) -> dict:
    """Evaluate one already-loaded model alone on `records` (the training loop calls this); -> summary dict
    with pass@k in %, reasons, per-level accuracy, seconds and problems/minute."""
    if samples > 1 and temperature <= 0:
        raise ValueError("--samples > 1 needs --temperature > 0 (greedy samples are identical)")
    complete = model_completer(model, tokenizer, samples, temperature, top_p, max_new_tokens, batch_size, seed)
    chunk = max(1, batch_size // samples)              # one generate batch per written chunk (records are
                                                       # length-sorted first, so nothing is lost by this)
    return evaluate_records(records, complete, samples, out_path, resume, chunk, progress, name=name,
                            **sandbox_kwargs)


def pool_summaries(summaries: dict[str, dict], samples: int) -> dict[str, dict]:
    """Add pooled rows (aime = aime24 + aime25, item-weighted) when all their parts ran."""
    out = dict(summaries)
    for pooled, parts in POOLED.items():
        if all(p in summaries for p in parts):
            items = sum(summaries[p]["items"] for p in parts)
            row = {"items": items, "samples": samples, "pooled": list(parts)}
            for k in report_ks(samples):
                row[f"pass@{k}"] = round(sum(summaries[p][f"pass@{k}"] * summaries[p]["items"] for p in parts)
                                         / items, 2)
            out[pooled] = row
    return out


def paper_average(summaries: dict[str, dict], key: str = "pass@1") -> float | None:
    """The paper's "Avg": plain mean over gsm8k, math500, minerva_math, olympiadbench, aime (pooled)."""
    if not all(b in summaries for b in PAPER_MATH):
        return None
    return round(sum(summaries[b][key] for b in PAPER_MATH) / len(PAPER_MATH), 2)


def format_table(summaries: dict[str, dict], samples: int) -> str:
    """The results table printed at the end of a run."""
    ks = report_ks(samples)
    head = f"{'benchmark':<16}{'items':>7}" + "".join(f"{'pass@' + str(k):>10}" for k in ks) + f"{'prob/min':>10}"
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        speed = s.get("problems_per_minute")
        lines.append(f"{name:<16}{s['items']:>7}" + "".join(f"{s[f'pass@{k}']:>10.2f}" for k in ks)
                     + (f"{speed:>10.1f}" if speed else f"{'':>10}"))
    average = paper_average(summaries)
    if average is not None:
        lines.append(f"{'Avg (paper 5)':<16}{'':>7}{average:>10.2f}")
    for name, s in summaries.items():  # per level (synthetic, ladder, MATH): accuracy and, sampled, mixed groups
        for level, accuracy in s.get("pass@1_by_level", {}).items():
            mixed = s.get("mixed_share_by_level", {}).get(level)
            lines.append(f"  {name} level {level:<5}{'':>4}{accuracy:>10.2f}"
                         + (f"  mixed groups {mixed:.1f} %" if mixed is not None else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# 7) Command line
# ----------------------------------------------------------------------------------------------------------

@dataclass
class EvalConfig:
    model: str = field(default="smollm2-135m", metadata={"help": "llm.load_model name or Hub id; 'tiny' = "
                                                                 "llm.tiny_model() (tests); ignored with --oracle"})
    benchmarks: str = field(default="gsm8k", metadata={"help": "comma-separated data.py names; 'aime' = aime24,"
                                                              "aime25 (pooled row); 'paper' = the paper's six"})
    data_dir: str | None = field(default=None, metadata={"help": "local data folder (`python data.py download`)"})
    data_file: str | None = field(default=None, metadata={"help": "one benchmark file (then one benchmark)"})
    limit: int | None = field(default=None, metadata={"help": "first N records of each benchmark", "type": int})
    batch_size: int = field(default=64, metadata={"help": "sequences per forward pass; 1 = one problem at a "
                                                          "time (64 was 1.14x faster than 16 on CPU, docs/RESULTS.md)"})
    max_new_tokens: int = field(default=512, metadata={"help": "T: completion tokens per answer"})
    samples: int = field(default=1, metadata={"help": "K samples per problem: pass@1..K (K > 1 needs temperature)"})
    temperature: float = field(default=0.0, metadata={"help": "0.0 = greedy (the paper's pass@1 protocol)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling when temperature > 0"})
    seed: int = field(default=0, metadata={"help": "sampling seed and the --oracle shuffled derangement seed"})
    out: str | None = field(default=None, metadata={"help": "results folder (default results/eval-<model>)"})
    resume: bool = field(default=False, metadata={"help": "skip items already in the results files"})
    oracle: str | None = field(default=None, metadata={"help": "gold | shuffled: grade gold solutions (of the same "
                                                                "/ another problem), no model"})
    timeout: float = field(default=sandbox.DEFAULT_TIMEOUT, metadata={"help": "sandbox wall seconds per program"})
    memory_mb: int = field(default=sandbox.DEFAULT_MEMORY_MB, metadata={"help": "sandbox address space, MB"})
    workers: int | None = field(default=None, metadata={"help": "parallel sandboxes (default: CPU cores)",
                                                        "type": int})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads"})
    quiet: bool = field(default=False, metadata={"help": "no tqdm progress bar"})
    # The fields of llm.DeviceConfig, repeated (not inherited) so that this module imports no torch for the grader;
    # tests/test_llm.py checks that they stay the same.
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA, then Apple MPS, then CPU; prints its "
                                                          "choice), 'cuda', 'mps' or 'cpu'"})
    bf16: bool = field(default=None, metadata={"help": "bf16 mixed precision: fp32 weights and optimizer states, "
                       "forward passes under bf16 autocast; default: on for a CUDA GPU with bf16, off elsewhere "
                       "(--no-bf16 turns it off)"})
    fp16: bool = field(default=None, metadata={"help": "fp16 mixed precision with a gradient scaler; default: on "
                       "for a CUDA GPU without bf16 (T4, RTX 20xx), off elsewhere"})


class ConfigError(ValueError):
    """A bad setting of the command line, found before any model loads; one line naming the setting."""


def parse_config(argv: Sequence[str] | None) -> EvalConfig:
    """--field-name value for every EvalConfig field (bools are flags); help from the field metadata."""
    import llm  # imported here: the grader needs no torch

    return llm.parse_config(EvalConfig, argv, "Evaluate one model alone on the ILR benchmarks.", prog="evaluate.py")


def check_eval_config(cfg: EvalConfig) -> None:
    """Every field of EvalConfig, checked in one place, before any model loads: a bad one is one line."""
    import data

    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)

    for name in ("temperature", "top_p", "timeout"):
        need(math.isfinite(getattr(cfg, name)), f"--{name.replace('_', '-')} must be a finite number, got "
                                                 f"{getattr(cfg, name)}")
    need(cfg.oracle is not None or bool(cfg.model.strip()), f"--model must name a model (got {cfg.model!r})")
    names = benchmark_names(cfg.benchmarks)
    need(bool(names), f"--benchmarks must name at least one benchmark (got {cfg.benchmarks!r})")
    for name in names:
        need(name in data.BENCHMARKS, f"--benchmarks: unknown benchmark {name!r}; choose from "
                                      f"{', '.join(list(data.BENCHMARKS) + list(ALIASES))}")
    need(cfg.data_dir is None or Path(cfg.data_dir).is_dir(), f"--data-dir {cfg.data_dir}: no such directory")
    need(cfg.data_file is None or Path(cfg.data_file).is_file(), f"--data-file {cfg.data_file}: no such file")
    need(cfg.data_file is None or len(names) == 1, "--data-file holds one benchmark: pass exactly one name in "
                                                   "--benchmarks")
    need(cfg.limit is None or cfg.limit >= 1, f"--limit must be >= 1 (leave it out for all), got {cfg.limit}")
    for name in ("batch_size", "max_new_tokens", "samples", "threads"):
        need(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    need(cfg.workers is None or cfg.workers >= 1, f"--workers must be >= 1 (leave it out for one per core), got "
                                                   f"{cfg.workers}")
    need(cfg.temperature >= 0, f"--temperature must be >= 0 (0 = greedy), got {cfg.temperature}")
    need(cfg.samples == 1 or cfg.temperature > 0 or cfg.oracle is not None,
         f"--samples {cfg.samples} needs --temperature > 0 (greedy samples are identical)")
    need(0 < cfg.top_p <= 1, f"--top-p must be in (0, 1], got {cfg.top_p}")
    need(cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}")
    need(cfg.out is None or bool(cfg.out.strip()), "--out must not be empty")
    need(cfg.oracle in (None, "gold", "shuffled"), f"--oracle must be 'gold' or 'shuffled', got {cfg.oracle!r}")
    try:                                                  # the floor the interpreter itself needs (sandbox.py)
        sandbox.check_limits(cfg.memory_mb, cfg.timeout)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # llm.pick_device's and llm.pick_precision's first rules, without importing torch here (this module must not)
    need(cfg.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    need(not (cfg.bf16 and cfg.fp16), "--bf16 and --fp16 exclude each other: choose one")


def benchmark_names(spec: str) -> list[str]:
    """'gsm8k,aime' -> ['gsm8k', 'aime24', 'aime25'] (aliases expanded, order kept, no repeats)."""
    names = []
    for name in (n.strip() for n in spec.split(",") if n.strip()):
        for expanded in ALIASES.get(name, [name]):
            if expanded not in names:
                names.append(expanded)
    return names


def load_records(name: str, cfg: EvalConfig) -> list[dict]:
    """The records of one benchmark; a file that is not UTF-8 text, or holds none, is one line."""
    import data

    where = cfg.data_file or cfg.data_dir or "the Hugging Face Hub"
    try:
        records = data.load_benchmark(name, data_dir=cfg.data_dir, data_file=cfg.data_file, limit=cfg.limit)
    except UnicodeDecodeError:
        raise data.DataError(f"{where}: not a UTF-8 text file (JSONL or a JSON list of {name} records)") from None
    if not records:
        raise data.DataError(f"{where}: no {name} records (an empty file or an empty list)")
    return records


# What shapes a row of <out>/<benchmark>.jsonl besides its question: rows written under other settings (another
# model, answer length, sampling, sandbox) are another experiment, so --resume continues a file only if these are
# the same as recorded in <benchmark>.settings.json beside it. The question and prompt of each row are compared with
# the records themselves (`check_resume`), so --limit may grow: the rows of the questions both runs share are equal.
MODEL_FILES = "--model's files"         # a hash, shown without its value


def model_identity(name: str) -> str:
    """Which weights --model names: for a local folder a hash of its files (a folder trained further, or another
    agent's folder under the same name, is another model); a Hub id or 'tiny' by its name. A folder with a
    checksums.json (ilr.py's final/agent{i}/) is named by that list, which llm.load_model then checks against the
    files: they are read once, not twice."""
    import llm

    folder = Path(name).expanduser()
    if not folder.is_dir():
        return name
    try:
        sums = json.loads((folder / llm.CHECKSUMS).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):   # none (or damaged: load_model will say so)
        sums = llm.file_checksums(folder)
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:16]


def row_settings(cfg: EvalConfig) -> dict:
    """What every row of a results file depends on, keyed by the option that sets it (JSON values, as read back)."""
    settings = {} if cfg.oracle else {"--model": cfg.model, MODEL_FILES: model_identity(cfg.model)}
    settings |= {"--oracle": cfg.oracle, "--max-new-tokens": cfg.max_new_tokens, "--samples": cfg.samples,
                 "--temperature": cfg.temperature, "--top-p": cfg.top_p, "--seed": cfg.seed,
                 "--timeout": cfg.timeout, "--memory-mb": cfg.memory_mb}
    return json.loads(json.dumps(settings))


def check_resume(path: Path, settings: dict, records: Sequence[dict]) -> None:
    """--resume: refuse, in one line, to add rows to `path` under other settings than its rows were written with
    (its .settings.json), or when a row's question, prompt or gold answer is not the current record's. A file
    without rows has nothing to mix with."""
    if not (path.is_file() and path.stat().st_size):
        return
    stamp = path.with_suffix(".settings.json")
    try:
        there = json.loads(stamp.read_text())
    except (OSError, ValueError):
        raise ResultsError(f"--resume {path}: no readable {stamp.name} beside it to say which settings wrote its "
                           f"rows (an older evaluate.py?); use another --out") from None
    for key, value in settings.items():
        if there.get(key) != value:
            values = "" if key == MODEL_FILES else f" ({there.get(key)!r} there, {value!r} now)"
            raise ResultsError(f"--resume {path}: {key} differs from the rows already there{values}; use the "
                               f"same settings, or another --out")
    by_id = {r["id"]: r for r in records}
    for row in read_results(path):                   # rows beyond a smaller --limit are kept, not counted
        record = by_id.get(row["id"])
        if record is not None and [row.get("prompt"), row.get("gold")] != json.loads(json.dumps(
                [test_prompt(record), record["answer"]])):    # compared as the row reads back from JSON
            raise ResultsError(f"--resume {path}: the question, prompt or answer of item {row['id']!r} is not the "
                               f"one its row was written for (another data file or prompt?); use another --out")


def main(argv: Sequence[str] | None = None) -> dict:
    """The command line; a bad setting, data file, results file or model is one line (exit 2), no traceback."""
    import data

    errors = (ConfigError, ResultsError, FileExistsError, data.DataError)
    try:
        return evaluate_main(argv)
    except Exception as e:
        llm = sys.modules.get("llm")                      # a ModelError can only come from an imported llm
        if isinstance(e, errors) or (llm is not None and isinstance(e, llm.ModelError)):
            print(f"evaluate.py: error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


def evaluate_main(argv: Sequence[str] | None) -> dict:
    cfg = parse_config(argv)
    check_eval_config(cfg)
    names = benchmark_names(cfg.benchmarks)
    tag = f"oracle-{cfg.oracle}" if cfg.oracle else re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.model)
    out = Path(cfg.out or Path("results") / f"eval-{tag}")
    records = {name: load_records(name, cfg) for name in names}       # every data error before the model loads
    settings = row_settings(cfg)
    for name in names:                                                # every --resume mismatch, too
        if cfg.resume:
            check_resume(out / f"{name}.jsonl", settings, records[name])
    for name in names:                                                # a file about to start: record its settings
        path = out / f"{name}.jsonl"
        if not (path.is_file() and path.stat().st_size):
            out.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".settings.json").write_text(json.dumps(settings, indent=1))
    model = tokenizer = None
    if not cfg.oracle:
        import torch
        import llm

        torch.set_num_threads(cfg.threads)
        model, tokenizer = llm.load_for_cli(cfg.model, cfg.device, cfg.bf16, cfg.fp16)
    sandbox_kwargs = dict(timeout=cfg.timeout, memory_mb=cfg.memory_mb)
    summaries = {}
    for name in names:
        path = out / f"{name}.jsonl"
        if cfg.oracle:
            summaries[name] = evaluate_records(records[name], oracle_completer(records[name], cfg.oracle, cfg.seed),
                                               cfg.samples, path, cfg.resume, 256, not cfg.quiet, cfg.workers,
                                               name=name, **sandbox_kwargs)
        else:
            summaries[name] = evaluate_model(model, tokenizer, records[name], cfg.samples, cfg.temperature,
                                             cfg.top_p, cfg.max_new_tokens, cfg.batch_size, path, cfg.resume,
                                             not cfg.quiet, cfg.seed, name, workers=cfg.workers, **sandbox_kwargs)
        s = summaries[name]
        if cfg.oracle:
            s["problems_per_minute"] = None          # grading only: a speed would mean nothing
        print(f"{name}: pass@1 {s['pass@1']:.2f} % over {s['items']} items ({s['new_items']} new, "
              f"{s['seconds']:.1f} s) reasons {s['reasons']}", flush=True)
    summaries = pool_summaries(summaries, cfg.samples)
    result = {"config": dataclasses.asdict(cfg), "sandbox": sandbox.describe_sandbox(),
              "benchmarks": summaries, "paper_average": paper_average(summaries)}
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    print(format_table(summaries, cfg.samples))
    print(f"results: {out}/<benchmark>.jsonl, {out}/summary.json")
    return result


if __name__ == "__main__":
    main()
