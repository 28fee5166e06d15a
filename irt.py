"""irt.py — Dynamic Interaction: choose cooperation or competition per question (ILR §1, Item Response Theory).

What it implements (see ../shared/paper/ILR-method.md §1):
    P(q, i) = 1 / (1 + exp(-1.7 * (gamma_i - D_q)))          IRT, 1PL with the 1.7 scaling constant
    mode(q) = "cooperation" if P < 0.5 else "competition"     hard question -> cooperate, easy -> compete
  gamma_i (ability)    = model i's greedy accuracy on a held-out validation set (paper: 1,000 MATH questions).
  D_q     (difficulty) = self-ranking: the model orders random groups of n questions from easiest to hardest;
                         positions become normalised ranks in [0, 1] (0 = easiest), averaged over S random
                         splits of the questions and over the M agents.
                         OURS, the control (difficulty="level"): the data's known level, min-max normalised to
                         [0, 1] (`level_difficulty`), for when the model ranks no better than chance.
Both gamma and D_q live in [0, 1], so "P < 0.5" reads "the question is harder than the model is able".

Data flow: ilr (training loop) -> irt.assign_modes(difficulty, ability) -> idea3 (prompts framed as partner or
competitor) -> evaluate.reward -> grpo -> ilr. gamma and D_q are computed once, before training.

Shapes: B questions in a batch, Q questions in a set, M agents, S splits, n questions per ranking group.

Run / test:
    python irt.py validate --model smollm2-135m --benchmark math --limit 100       # Spearman vs MATH level
    python irt.py validate --model smollm2-135m --benchmark synthetic --limit 60   # vs number of steps
    python irt.py validate --model smollm2-135m --benchmark ladder --limit 40      # vs ladder level, both modes
    .venv/bin/python -m pytest tests/test_irt.py --doctest-modules irt.py -q

Choices where the paper is open (each one lives in one place, named here):
  1. Several agents, one mode per question: the agents' probabilities are averaged (`question_mode`,
     `agents_reduce="mean"`); "min" = cooperate if any agent finds it hard, "max" = only if all do.
  2. D_q is shared by the agents: each agent ranks the same groups, and the normalised ranks are averaged
     over agents and splits (`estimate_difficulty`); only gamma_i differs between agents.
  3. Group size n = 4 and S = 3 splits (`group_size`, `num_splits`): 4 questions fit a small model's context
     and give 4 rank levels; 3 splits give every question 3 comparisons against different peers.
  4. The ranking prompt (`RANKING_PROMPT`): numbered questions, "do not solve them", answer with the numbers,
     easiest first, separated by commas; no example order (a small model copies it). Each question is cut to
     `max_question_chars` characters so a group fits the context. The parser (`parse_ranking`) reads many formats.
  5. Normalised rank = position / (n - 1); a group of one (the last group may be small) gets 0.5.
  6. A partial ranking keeps the positions of the ids it names; the missing ids share the remaining positions
     (they tie at their mean); a ranking with no usable id gives 0.5 to all (`group_ranks`). Both are counted,
     and so are "identity" rankings (the order shown, repeated); `drop_identity` treats those as invalid.
  7. Ranking is greedy (temperature 0): deterministic, so the cache is exact; diversity comes from the S splits.
  8. The "random" ablation draws each question's mode independently with P(cooperation) = cooperation_ratio.
  9. Ability is measured with evaluate.py's test-time prompt and grader (`evaluate.reward`), greedy, 256 tokens.
  10. difficulty="level" (`level_difficulty`, ilr --difficulty level): D_q = (level - min) / (max - min) over
     the questions given, min-max rather than rank-based (equal for balanced levels, as the ladder's). For a
     model that ranks at chance (SmolLM2-135M: Spearman 0.10 on the synthetic task) this is the only D_q under
     which both modes occur; gamma is still measured, on held-out questions of the same data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

import llm  # generate(...) is looked up at call time, so tests can monkeypatch it
import ranks

IRT_SCALE = 1.7  # PAPER (secondary): the normal-ogive scaling constant D = 1.7 of IRT (1PL/Rasch form)
MODE_THRESHOLD = 0.5  # PAPER (secondary): cooperation if P < 0.5
INTERACTIONS = ("dynamic", "cooperation", "competition", "random")  # PAPER: Figure 3 ablation + IRT-dynamic
RANKING_COUNTS = ("valid", "partial", "invalid", "identity", "single", "generated", "cached")  # see self_rank
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "irt"  # .cache/ is git-ignored


# ----------------------------------------------------------------------------------------------------------
# 1) IRT probability and the mode of a question (pure)
# ----------------------------------------------------------------------------------------------------------

def irt_probability(ability, difficulty, scale: float = IRT_SCALE):
    """Probability that a model of ability gamma solves a question of difficulty D_q (1PL IRT).

        P = 1 / (1 + exp(-scale * (gamma - D_q)))

    1.7 is the normal-ogive scaling constant of IRT: with it the logistic curve stays within 0.01 of the
    normal CDF. With the 0.5 threshold it does not change any decision (P < 0.5 <=> D_q > gamma); it only
    shapes P as a soft value. Works on floats, numpy arrays and torch tensors (broadcasting).

    >>> irt_probability(0.5, 0.5)
    0.5
    >>> round(irt_probability(0.8, 0.3), 4)          # 1 / (1 + e^-0.85)
    0.7006
    >>> irt_probability(0.2, np.array([0.0, 0.2, 1.0])).round(4).tolist()
    [0.5842, 0.5, 0.2042]
    """
    if isinstance(ability, torch.Tensor) or isinstance(difficulty, torch.Tensor):
        return 1.0 / (1.0 + torch.exp(-scale * (torch.as_tensor(ability) - torch.as_tensor(difficulty))))
    with np.errstate(over="ignore"):  # exp overflow -> inf -> P = 0, which is the right limit
        p = 1.0 / (1.0 + np.exp(-scale * (np.asarray(ability, float) - np.asarray(difficulty, float))))
    return float(p) if p.ndim == 0 else p


def choose_mode(probability: float, threshold: float = MODE_THRESHOLD) -> str:
    """PAPER (secondary): "cooperation" if P < threshold (hard: pool the agents), else "competition".

    >>> choose_mode(0.49), choose_mode(0.5), choose_mode(0.9)
    ('cooperation', 'competition', 'competition')
    """
    return "cooperation" if probability < threshold else "competition"


AGENT_REDUCTIONS = {"mean": np.mean, "min": np.min, "max": np.max}


def question_mode(probabilities: Sequence[float], threshold: float = MODE_THRESHOLD,
                  agents_reduce: str = "mean") -> str:
    """One mode for a question from the M agents' probabilities P(q, i), shape [M].

    OPEN: the paper computes P per model but the agents interact in one mode per question. OURS: the mean P
    (symmetric in the agents; the "average agent's" chance to solve it alone). To change it pass
    agents_reduce="min" (cooperate as soon as one agent finds the question hard) or "max" (cooperate only
    when every agent finds it hard).

    >>> question_mode([0.3, 0.6])                       # mean 0.45 < 0.5
    'cooperation'
    >>> question_mode([0.3, 0.8]), question_mode([0.3, 0.8], agents_reduce="min")
    ('competition', 'cooperation')
    """
    return choose_mode(float(AGENT_REDUCTIONS[agents_reduce](np.asarray(probabilities, float))), threshold)


def assign_modes(difficulties: Sequence[float], abilities: Sequence[float], interaction: str = "dynamic",
                 cooperation_ratio: float = 0.5, rng: np.random.Generator | int | None = None,
                 threshold: float = MODE_THRESHOLD, scale: float = IRT_SCALE,
                 agents_reduce: str = "mean") -> list[str]:
    """The mode of each of B questions: difficulties [B] (D_q), abilities [M] (gamma_i) -> list of B modes.

    interaction (PAPER, Figure 3 ablation):
      "dynamic"     IRT: P [B, M] = irt_probability(gamma, D_q), one mode per question by `question_mode`;
      "cooperation" always cooperate (p = 1);  "competition" always compete (p = 0);
      "random"      OURS: each question cooperates with probability cooperation_ratio (p), independently.
    rng: a numpy Generator or a seed (only "random" uses it).

    >>> assign_modes([0.9, 0.1], [0.3, 0.5])            # hard question -> cooperate, easy -> compete
    ['cooperation', 'competition']
    >>> assign_modes([0.9, 0.1], [0.3, 0.5], interaction="competition")
    ['competition', 'competition']
    """
    num_questions = len(difficulties)
    if interaction == "dynamic":
        probabilities = irt_probability(np.asarray(abilities, float)[None, :],  # [1, M]
                                        np.asarray(difficulties, float)[:, None], scale)  # [B, 1] -> [B, M]
        return [question_mode(p, threshold, agents_reduce) for p in probabilities]
    if interaction in ("cooperation", "competition"):
        return [interaction] * num_questions
    if interaction == "random":
        draws = np.random.default_rng(rng).random(num_questions)  # [B] uniform in [0, 1)
        return ["cooperation" if u < cooperation_ratio else "competition" for u in draws]
    raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")


DIFFICULTIES = ("self_rank", "level")  # where D_q comes from: the paper's self-ranking, or the data's known level


def level_difficulty(levels: Sequence[float]) -> np.ndarray:
    """D_q [Q] from a known difficulty level per question (OURS, the control of self-ranking):

        D_q = (level_q - min level) / (max level - min level)       min and max over the Q questions

    It lives in [0, 1] like the self-ranked D_q (0 = easiest of this set, 1 = hardest): like a rank, it is
    relative to the questions given. For balanced levels (the ladder cycles through its levels) it equals the
    normalised rank of the level. All levels equal -> 0.5 for every question ("no information", as an empty
    ranking).

    >>> level_difficulty([1, 3, 5, 2]).tolist()
    [0.0, 0.5, 1.0, 0.25]
    >>> level_difficulty([4, 4]).tolist()
    [0.5, 0.5]
    """
    levels = np.asarray(levels, float)  # [Q]
    if levels.size == 0 or np.isnan(levels).any():
        raise ValueError("every question needs a known level (meta['level']) for difficulty='level'")
    low, high = levels.min(), levels.max()
    return np.full(levels.shape, 0.5) if high == low else (levels - low) / (high - low)


def cooperation_share_by_level(modes: Sequence[str], levels: Sequence, all_levels: Sequence = ()) -> dict:
    """Share of "cooperation" among the questions of each level: modes [B], levels [B] -> {level: share}.
    Levels in `all_levels` with no question here get None (a step's batch holds a few levels only).

    >>> cooperation_share_by_level(["cooperation", "competition", "cooperation"], [5, 1, 5], all_levels=[1, 3, 5])
    {1: 0.0, 3: None, 5: 1.0}
    """
    out = {}
    for level in sorted((set(all_levels) | set(levels)) - {None}):  # a question without a level is left out
        chosen = [m for m, q_level in zip(modes, levels) if q_level == level]
        out[level] = chosen.count("cooperation") / len(chosen) if chosen else None
    return out


# ----------------------------------------------------------------------------------------------------------
# 2) Self-ranking difficulty D_q: the pure parts (groups, prompt, parsing, ranks, aggregation)
# ----------------------------------------------------------------------------------------------------------

# OPEN (the paper's prompt is not public). OURS: short, numbered, with the answer format spelled out.
RANKING_PROMPT = """Sort the following {n} math questions by difficulty, from the easiest to the hardest. \
Do not solve them.

{questions}

Do not solve the questions. Answer with the {n} question numbers only, easiest first, separated by commas."""
# No example order in the prompt: SmolLM2-135M copied "for example: 2, 4, 1, 3" verbatim, a "valid" ranking.


def split_into_groups(num_questions: int, group_size: int, seed: int) -> list[list[int]]:
    """A random split of question indices 0..Q-1 into groups of n; the last group may be smaller.

    >>> split_into_groups(10, 4, seed=0)
    [[4, 6, 2, 7], [3, 5, 9, 0], [8, 1]]
    """
    order = np.random.default_rng(seed).permutation(num_questions).tolist()
    return [order[start:start + group_size] for start in range(0, num_questions, group_size)]


def ranking_prompt(questions: Sequence[str], max_question_chars: int = 700) -> str:
    """The self-ranking prompt for one group; question k is "Question k" (1-based), cut to max_question_chars.

    >>> print(ranking_prompt(["1+1?", "Solve x^2=2."]).splitlines()[2])
    Question 1: 1+1?
    """
    cut = [q if len(q) <= max_question_chars else q[:max_question_chars].rstrip() + " ..." for q in questions]
    numbered = "\n\n".join(f"Question {k}: {q}" for k, q in enumerate(cut, start=1))
    return RANKING_PROMPT.format(n=len(questions), questions=numbered)


# The three readings of a ranking answer. An id may carry a prefix: "Question 3", "Q3", "problem #3", "#3".
_PREFIX = r"(?:(?<![a-z])(?:question|problem|q)\s*(?:no\.?|number)?\s*#?\s*|#)"
_ID = rf"{_PREFIX}?\d+"
_SEPARATOR = r"(?:\s*[,;]\s*|[^\S\n]*(?:>|->|=>|\u2192|\band\b|\bthen\b)[^\S\n]*|[^\S\n]+)"  # , ; > -> then
_RUN = re.compile(rf"{_ID}(?:(?:{_SEPARATOR})+{_ID})+", re.IGNORECASE)       # "3, 1, 4, 2", "Q3 > Q1 > Q2"
# A list item "1. Question 3 ..." or "1. 3" / "1. 3." / "1) 3 (easiest)"; a bare number followed by a word
# ("1. 3 pencils") is the model solving the question, not an id.
_LIST_ITEM = re.compile(rf"^[^\S\n]*\d+[.)][^\S\n]*({_PREFIX}\d+|\d+(?![.,]\d)(?=[^\S\n]*(?:$|[.,;:()\-])))",
                        re.IGNORECASE | re.MULTILINE)
_MATH_SPAN = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.DOTALL)  # $..$ \(..\) \[..\]
_MENTION = re.compile(r"(?<![a-z])(?:question|problem|q)\s*(?:no\.?|number)?\s*#?\s*(\d+)(?![\d:])(?!\s+:)",
                      re.IGNORECASE)  # "... is question 2, then question 3"; a header "Question 1:" is an echo


def _ids(texts: Sequence[str], n: int) -> list[int]:
    """The ids 1..n in these texts, first occurrence only, out-of-range numbers dropped."""
    numbers = [int(x) for text in texts for x in re.findall(r"\d+", text)]
    return list(dict.fromkeys(x for x in numbers if 1 <= x <= n))


def parse_ranking(text: str, n: int) -> tuple[list[int], bool]:
    """The model's ranking of a group of n -> (question ids 1..n as stated, easiest first; valid).

    Three readings: (1) a run of ids joined by , ; > -> "then" "and" or spaces, on one line unless commas
    ("3, 1, 2", "[3, 1, 2]", "Q3 > Q1 > Q2", words around), with at least two usable ids; (2) a numbered list
    "1. Question 3 / 2. Question 1 / ..."; (3) ids named in prose ("question 2 ... question 3"). The first
    complete reading wins (runs before list before prose), else the longest. A header "Question 1:" is the
    model echoing the prompt and never counts, nor do numbers inside LaTeX math ("$(4,2)$" is a point, not a
    ranking). Out-of-range ids and repeats are dropped. valid = all n ids.
    The order may be partial (even empty): `group_ranks` turns it into ranks. Never raises.

    >>> parse_ranking("Order: 3, 1, 2.", 3)
    ([3, 1, 2], True)
    >>> parse_ranking("1. Question 2\\n2. Question 3\\n3. Question 1", 3)
    ([2, 3, 1], True)
    >>> parse_ranking("Q4 > Q1 > Q1 > Q9", 4)            # repeat and out-of-range dropped: partial
    ([4, 1], False)
    >>> parse_ranking("Question 1: the answer is 1 + 2 = 3.", 3)   # an echo of the prompt, no ranking
    ([], False)
    """
    text = _MATH_SPAN.sub(" ", text) if isinstance(text, str) else ""
    runs = [ids for ids in (_ids([m.group()], n) for m in _RUN.finditer(text)) if len(ids) >= 2]
    candidates = runs + [_ids(_LIST_ITEM.findall(text), n), _ids(_MENTION.findall(text), n)]
    order = next((c for c in candidates if len(c) == n), max(candidates, key=len))
    return order, len(order) == n


def ranking_status(order: Sequence[int], n: int) -> str:
    """"valid" (all n ids), "partial" (some) or "invalid" (none) — the three counted outcomes.

    >>> ranking_status([2, 1], 2), ranking_status([2], 3), ranking_status([], 3)
    ('valid', 'partial', 'invalid')
    """
    return "valid" if len(order) == n else ("partial" if order else "invalid")


def group_ranks(order: Sequence[int], n: int) -> list[float]:
    """Normalised ranks [n] in [0, 1] of a group's questions 1..n (0 = easiest) from a possibly partial order.

        rank(q) = position(q) / (n - 1)          position 0 = easiest
    OURS: ids missing from the order share the remaining positions (a tie: each gets their mean), so an empty
    order gives 0.5 to every question ("no information"); a group of one gets 0.5.

    >>> group_ranks([3, 1, 4, 2], 4)                   # question 1 at position 1 -> 1/3, ...
    [0.3333333333333333, 1.0, 0.0, 0.6666666666666666]
    >>> group_ranks([2], 3)                            # 1 and 3 tie on positions 1 and 2 -> 1.5 / 2
    [0.75, 0.0, 0.75]
    >>> group_ranks([], 4), group_ranks([], 1)
    ([0.5, 0.5, 0.5, 0.5], [0.5])
    """
    if n == 1:
        return [0.5]
    missing_position = (len(order) + n - 1) / 2  # mean of the free positions len(order) .. n-1
    position = {q: float(k) for k, q in enumerate(order)}
    return [position.get(q, missing_position) / (n - 1) for q in range(1, n + 1)]


def scatter_group_ranks(groups: Sequence[Sequence[int]], ranks: Sequence[Sequence[float]],
                        num_questions: int) -> np.ndarray:
    """Per-group ranks back onto the question axis: one split's groups -> ranks [Q] (each question once).

    >>> scatter_group_ranks([[2, 0], [1]], [[0.0, 1.0], [0.5]], 3).tolist()
    [1.0, 0.5, 0.0]
    """
    out = np.full(num_questions, 0.5)  # [Q]
    for group, group_rank in zip(groups, ranks):
        out[list(group)] = group_rank
    return out


def aggregate_difficulty(ranks) -> np.ndarray:
    """D_q = the mean normalised rank over agents and splits: ranks [M, S, Q] (or [S, Q]) -> difficulty [Q].

    >>> aggregate_difficulty([[[0.0, 1.0, 0.5], [1/3, 2/3, 0.0]],          # agent 1, splits 1 and 2
    ...                       [[0.0, 1.0, 1.0], [0.0, 1.0, 0.5]]]).round(4).tolist()   # agent 2
    [0.0833, 0.9167, 0.5]
    """
    ranks = np.asarray(ranks, float)
    return ranks.reshape(-1, ranks.shape[-1]).mean(axis=0)  # mean over the M*S rankings -> [Q]


# ----------------------------------------------------------------------------------------------------------
# 3) Spearman correlation (for the validation command; numpy only)
# ----------------------------------------------------------------------------------------------------------

def average_ranks(values) -> np.ndarray:
    """1-based ranks, ties get the mean of the ranks they span.

    >>> average_ranks([10, 30, 20, 20]).tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    _, inverse, counts = np.unique(np.asarray(values, float), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1  # [K] first rank of each distinct value
    return (first + (counts - 1) / 2.0)[inverse]


def spearman(x, y) -> float:
    """Spearman's rho = Pearson correlation of the average ranks; nan if either side is constant.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    >>> round(spearman([1, 2, 2, 3], [1, 3, 2, 4]), 6)   # ties: sqrt(0.9)
    0.948683
    """
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------------
# 4) On-disk cache (JSON), keyed by model identity + settings + question text hashes
# ----------------------------------------------------------------------------------------------------------

def text_hash(text: str) -> str:
    """A short stable hash of a text (question, prompt, settings)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_identity(model) -> str:
    """"<name>-<fingerprint>": llm's name for the model (else the config's) plus a hash of the first 64 values
    of every parameter, so a trained checkpoint never reuses the cache of its base model."""
    name = (getattr(model, "name_or_path_ilr", "") or getattr(getattr(model, "config", None), "_name_or_path", "")
            or type(model).__name__)
    digest = hashlib.sha256()
    for param_name, param in model.named_parameters():
        digest.update(param_name.encode())
        digest.update(param.detach().reshape(-1)[:64].float().cpu().numpy().tobytes())
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(name)).name or "model") + "-" + digest.hexdigest()[:12]


def _cache_file(cache_dir, kind: str, model_id: str) -> Path | None:
    return None if cache_dir is None else Path(cache_dir) / kind / f"{model_id}.json"


def _load_cache(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # a corrupt cache is rebuilt, not fatal
        return {}


def _save_cache(path: Path | None, cache: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


# ----------------------------------------------------------------------------------------------------------
# 5) Self-ranking with a model: D_q
# ----------------------------------------------------------------------------------------------------------

def self_rank(model, tokenizer, questions: Sequence[str], group_size: int = 4, num_splits: int = 3,
              seed: int = 0, batch_size: int = 8, max_new_tokens: int = 48, temperature: float = 0.0,
              max_question_chars: int = 700, drop_identity: bool = False, cache_dir=DEFAULT_CACHE_DIR,
              progress: bool = True) -> tuple[np.ndarray, Counter]:
    """One model ranks Q questions: S random splits into groups of n -> normalised ranks [S, Q] and counts.

    Split s uses seed + s; all ranking prompts of a split go through one `llm.generate` call. Each group's
    completion text is cached under hash(model identity, settings, the group's question texts in order), so
    a rerun generates nothing and a better parser re-reads the stored texts. Counts: valid / partial /
    invalid groups, "identity" (valid but exactly the order shown: a sign of copying), single (groups of
    one, not asked), generated / cached. drop_identity=True (OURS, off by default) gives an identity
    ranking 0.5 for all, as if invalid: SmolLM2-135M often echoes the numbering ("1. 1. 2. 2. ..."). On 60
    synthetic questions 8 of 45 groups were such echoes; Spearman(D_q, steps) was 0.10 with them and 0.10
    without (docs/RESULTS.md, "Self-ranked difficulty"): the model's rankings carry no signal either way.
    """
    from tqdm.auto import tqdm

    model_id = model_identity(model)
    settings = text_hash(json.dumps([RANKING_PROMPT, max_question_chars, max_new_tokens, temperature]))
    cache_path = _cache_file(cache_dir, "self_rank", model_id)
    cache = _load_cache(cache_path)
    question_hashes = [text_hash(q) for q in questions]
    ranks = np.full((num_splits, len(questions)), 0.5)  # [S, Q]
    counts = Counter(dict.fromkeys(RANKING_COUNTS, 0))
    for split in tqdm(range(num_splits), desc="self-ranking splits", disable=not progress):
        groups = split_into_groups(len(questions), group_size, seed + split)
        keys = [text_hash(settings + "".join(question_hashes[i] for i in g)) for g in groups]
        todo = {k: g for k, g in zip(keys, groups) if len(g) > 1 and k not in cache}
        counts["generated"] += len(todo)
        counts["cached"] += sum(len(g) > 1 for g in groups) - len(todo)
        if todo:
            prompts = [ranking_prompt([questions[i] for i in g], max_question_chars) for g in todo.values()]
            out = llm.generate(model, tokenizer, prompts, n=1, temperature=temperature,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                               desc=f"D_q: self-ranking {len(todo)} groups of questions")
            cache.update({k: texts[0] for k, texts in zip(todo, out.texts)})
            _save_cache(cache_path, cache)
        group_rank_lists = []
        for group, key in zip(groups, keys):
            if len(group) == 1:
                counts["single"] += 1
                group_rank_lists.append([0.5])
                continue
            order, valid = parse_ranking(cache[key], len(group))
            counts[ranking_status(order, len(group))] += 1
            identity = valid and order == sorted(order)
            counts["identity"] += identity
            group_rank_lists.append(group_ranks([] if identity and drop_identity else order, len(group)))
        ranks[split] = scatter_group_ranks(groups, group_rank_lists, len(questions))
    return ranks, counts


def estimate_difficulty(agents: Sequence[tuple], questions: Sequence[str], **rank_kwargs) -> tuple[np.ndarray, dict]:
    """D_q [Q] for M agents [(model, tokenizer), ...]: each agent self-ranks (same splits), ranks [M, S, Q] are
    averaged over agents and splits (OURS: one shared D_q per question). Returns (difficulty, stats) where
    stats sums the agents' counts and adds valid_share = valid / ranked groups.
    """
    all_ranks, counts = [], Counter()
    # each agent ranks in the process that holds it (one process: all of them; torchrun: ranks.py)
    for agent_ranks, agent_counts in ranks.each_agent(len(agents), lambda i: self_rank(*agents[i], questions,
                                                                                       **rank_kwargs)):
        all_ranks.append(agent_ranks)
        counts.update(agent_counts)
    stats = dict(counts)
    ranked = counts["valid"] + counts["partial"] + counts["invalid"]
    stats["valid_share"] = counts["valid"] / ranked if ranked else float("nan")
    return aggregate_difficulty(np.stack(all_ranks)), stats  # [M, S, Q] -> [Q]


# ----------------------------------------------------------------------------------------------------------
# 6) Ability gamma_i: greedy accuracy on a validation set
# ----------------------------------------------------------------------------------------------------------

def greedy_correctness(model, tokenizer, records: Sequence[dict], grade_fn: Callable | None = None,
                       prompt_fn: Callable | None = None, batch_size: int = 8, max_new_tokens: int = 256,
                       cache_dir=DEFAULT_CACHE_DIR, save_every: int = 64, progress: bool = True,
                       desc: str = "greedy answers") -> np.ndarray:
    """Reward [Q] of the model's greedy answer to each record (1.0 = correct), cached per question.

    grade_fn(completion, record) -> float defaults to `evaluate.reward`; prompt_fn(record) -> str to
    evaluate.py's test-time prompt (both imported lazily). The completion text is cached under the model
    identity (file name), max_new_tokens and the prompt text, and graded on reading, so only new questions
    are generated and a changed grader needs no regeneration. Prompts go to `llm.generate` save_every at a
    time and the cache is written after each call, so an interrupted run (1,000 questions on a CPU) resumes.
    `desc` titles the progress bar (ilr.py: "γ: agent0 answers 24 validation questions").
    """
    if grade_fn is None or prompt_fn is None:
        import evaluate
        grade_fn = grade_fn or evaluate.reward
        prompt_fn = prompt_fn or evaluate.test_prompt
    cache_path = _cache_file(cache_dir, "answers", model_identity(model))
    cache = _load_cache(cache_path)
    prompts = [prompt_fn(r) for r in records]
    keys = [text_hash(f"{max_new_tokens}\n{p}") for p in prompts]
    todo = list({k: p for k, p in zip(keys, prompts) if k not in cache}.items())
    for start in range(0, len(todo), save_every):
        chunk = todo[start:start + save_every]
        out = llm.generate(model, tokenizer, [p for _, p in chunk], n=1, temperature=0.0,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, desc=desc)
        cache.update({k: texts[0] for (k, _), texts in zip(chunk, out.texts)})
        _save_cache(cache_path, cache)
    return np.array([float(grade_fn(cache[k], r)) for k, r in zip(keys, records)])  # [Q]


def estimate_ability(model, tokenizer, records: Sequence[dict], **kwargs) -> float:
    """gamma_i = greedy accuracy on the validation records (PAPER, secondary: 1,000 held-out MATH questions).
    Keyword arguments go to `greedy_correctness`."""
    return float(greedy_correctness(model, tokenizer, records, **kwargs).mean())


# ----------------------------------------------------------------------------------------------------------
# 7) Validation command: does self-ranking recover a known difficulty?
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ValidateConfig(llm.DeviceConfig):  # --device, --bf16, --fp16
    model: str = field(default="smollm2-135m", metadata={"help": "llm.load_model name; 'tiny' = llm.tiny_model()"})
    benchmark: str = field(default="math", metadata={"help": "data.load_benchmark name with meta['level'] "
                                                             "(math, math500), 'synthetic' (level = steps) or "
                                                             "'ladder' (level 1-5)"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory (data.py default if unset)"})
    data_file: str | None = field(default=None, metadata={"help": "one benchmark file instead of data_dir"})
    limit: int = field(default=100, metadata={"help": "Q: questions ranked, a seeded random sample"})
    group_size: int = field(default=4, metadata={"help": "n: questions per ranking group (OPEN, ours 4)"})
    num_splits: int = field(default=3, metadata={"help": "S: random splits averaged (OPEN, ours 3)"})
    drop_identity: bool = field(default=False, metadata={"help": "a ranking that repeats the order shown counts "
                                                                 "as no information (rank 0.5)"})
    ability_limit: int = field(default=100, metadata={"help": "held-out questions for gamma (paper: 1,000 MATH), "
                                                                "disjoint from the ranked ones"})
    ability: float | None = field(default=None, metadata={"help": "gamma given directly: skip measuring it",
                                                            "type": float})
    failure_rate: bool = field(default=False, metadata={"help": "also correlate D_q with 1 - greedy correctness "
                                                                "on the ranked questions (slower)"})
    threshold: float = field(default=MODE_THRESHOLD, metadata={"help": "cooperation if P < threshold (paper 0.5)"})
    irt_scale: float = field(default=IRT_SCALE, metadata={"help": "IRT scaling constant (paper 1.7)"})
    seed: int = field(default=0, metadata={"help": "seed of the sample and of the splits (split s uses seed + s)"})
    batch_size: int = field(default=8, metadata={"help": "llm.generate batch size"})
    rank_max_new_tokens: int = field(default=48, metadata={"help": "tokens for a ranking answer"})
    max_new_tokens: int = field(default=256, metadata={"help": "tokens for a solution (ability, failure rate)"})
    cache_dir: str = field(default=str(DEFAULT_CACHE_DIR), metadata={"help": "JSON cache of generations"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads"})
    output: str | None = field(default=None, metadata={"help": "write the report as JSON here"})


def parse_config(argv: Sequence[str]) -> ValidateConfig:
    """--field-name value for every ValidateConfig field (bools are flags); help from the field metadata."""
    return llm.parse_config(ValidateConfig, argv, "irt.py validate: self-ranking difficulty vs a known one")


def load_questions(cfg: ValidateConfig) -> tuple[list[dict], list[dict]]:
    """(Q records to rank, disjoint held-out records for gamma), a seeded random sample of the benchmark."""
    import data

    wanted = cfg.limit + (cfg.ability_limit if cfg.ability is None else 0)
    if cfg.benchmark == "synthetic":
        pool = data.synthetic_problems(wanted, seed=cfg.seed)
    elif cfg.benchmark == "ladder":
        pool = data.ladder_problems(wanted, seed=cfg.seed)
    else:
        pool = data.load_benchmark(cfg.benchmark, data_dir=cfg.data_dir, data_file=cfg.data_file)
    pool = [pool[i] for i in np.random.default_rng(cfg.seed).permutation(len(pool))]
    return pool[:cfg.limit], pool[cfg.limit:wanted]


def validate(cfg: ValidateConfig) -> dict:
    """Rank a benchmark sample, correlate D_q with the known level (and failure rate), measure gamma, split modes."""
    torch.set_num_threads(cfg.threads)
    model, tokenizer = llm.load_for_cli(cfg.model, cfg.device, cfg.bf16, cfg.fp16)
    ranked, held_out = load_questions(cfg)
    questions = [r["question"] for r in ranked]
    difficulty, stats = estimate_difficulty(
        [(model, tokenizer)], questions, group_size=cfg.group_size, num_splits=cfg.num_splits, seed=cfg.seed,
        batch_size=cfg.batch_size, max_new_tokens=cfg.rank_max_new_tokens, drop_identity=cfg.drop_identity,
        cache_dir=cfg.cache_dir)
    levels = np.array([float(r["meta"].get("level", "nan")) for r in ranked])  # [Q]
    lengths = np.array([len(q) for q in questions])  # [Q] a naive difficulty proxy, for comparison
    report = {"config": dataclasses.asdict(cfg), "num_questions": len(ranked), "ranking": stats,
              "spearman_level": spearman(difficulty, levels),
              "spearman_length": spearman(difficulty, lengths),
              "spearman_length_vs_level": spearman(lengths, levels),
              "mean_difficulty_by_level": {str(int(v)): round(float(difficulty[levels == v].mean()), 4)
                                           for v in np.unique(levels[~np.isnan(levels)])}}
    if cfg.failure_rate:
        failure = 1.0 - greedy_correctness(model, tokenizer, ranked, batch_size=cfg.batch_size,
                                           max_new_tokens=cfg.max_new_tokens, cache_dir=cfg.cache_dir)
        report.update(failure_rate=float(failure.mean()), spearman_failure=spearman(difficulty, failure),
                      spearman_level_vs_failure=spearman(levels, failure))
    if cfg.ability is None:
        ability = estimate_ability(model, tokenizer, held_out, batch_size=cfg.batch_size,
                                   max_new_tokens=cfg.max_new_tokens, cache_dir=cfg.cache_dir)
        report.update(ability=ability, ability_questions=len(held_out))
    else:
        report.update(ability=cfg.ability, ability_questions=0)
    modes = assign_modes(difficulty, [report["ability"]], "dynamic", threshold=cfg.threshold, scale=cfg.irt_scale)
    report["cooperation_share"] = modes.count("cooperation") / len(modes)
    known = ~np.isnan(levels)
    if known.all():  # the control: the same IRT with D_q = the known level (difficulty="level")
        level_modes = assign_modes(level_difficulty(levels), [report["ability"]], "dynamic",
                                   threshold=cfg.threshold, scale=cfg.irt_scale)
        report["cooperation_share_level"] = level_modes.count("cooperation") / len(level_modes)
        report["cooperation_by_level"] = {
            "self_rank": {str(int(k)): v for k, v in cooperation_share_by_level(modes, levels).items()},
            "level": {str(int(k)): v for k, v in cooperation_share_by_level(level_modes, levels).items()}}
    report["difficulty_quartiles"] = np.quantile(difficulty, [0, 0.25, 0.5, 0.75, 1]).round(4).tolist()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "validate":
        sys.exit("usage: python irt.py validate [--help]")
    cfg = parse_config(argv[1:])
    report = validate(cfg)
    for key, value in report.items():
        if key != "config":
            print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    if cfg.output:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
