"""
idea3.py — Idea3: how M agents talk before each writes its own final answer (ILR §2, arXiv 2509.26306).

What it implements (../shared/paper/ILR-method.md §2). Per question, in the mode irt.py chose for it:
    1. Idea Sharing   every agent solves the question alone (the test-time prompt)        -> solution[i]
    2. Idea Analysis  every agent reads its own and its peers' solutions and analyses them -> analysis[i]
                      cooperation: "your partner" — build on each other's ideas, find complementary steps
                      competition: "your competitor" — find the flaws, do better
    3. Idea Fusion    every agent reads the discussion and writes G final answers (\\boxed{}) -> the GRPO samples
At test time each trained model answers ALONE (evaluate.py); `multi_agent_answers` is the paper's Table 4
(untrained models answering together: single / debate / idea3), run by `python idea3.py compare` or `eval`.

Data flow: ilr -> irt.assign_modes (a mode per question) -> **idea3.run_idea3** -> evaluate.reward (grade each
final answer) -> grpo (Eq. 5 across agents, advantages per group, update per agent) -> ilr.

Shapes: B questions, G generations (num_generations), M agents (num_agents), P prompt tokens, T completion tokens.
Every per-agent structure is indexed agent first: samples[stage][i][b] is agent i's G samples on question b.

    import idea3, llm
    agents = [llm.load_model(), llm.load_model()]          # or the same (model, tokenizer) pair twice
    result = idea3.run_idea3(agents, ["What is 2 + 3?"], ["cooperation"], num_generations=4, temperature=1.0)
    print(idea3.format_transcript(result.transcripts[0]))
    prompt_ids, completion_ids = idea3.agent_batch(result, "fusion", 0)   # agent 0's B*G rows, b-major

    python idea3.py show --models smollm2-135m,smollm2-135m --benchmark gsm8k --data-dir data/ --index 0
    python idea3.py compare --models smollm2-135m,smollm2-135m --benchmark gsm8k --data-dir data/ --limit 50
    python idea3.py eval --mode idea3 --model smollm2-135m,smollm2-135m --benchmarks gsm8k,math500 --limit 50
    .venv/bin/python -m pytest tests/test_idea3.py --doctest-modules idea3.py -q          # ~30 s

How the trainer groups the samples for GRPO (see `Idea3Result`): one group = (stage, agent i, question b), the
G samples that share one prompt. Rewards of a stage form a tensor [B, M, G] (`stage_rewards`); Eq. 5 calibrates
across the M agents of each question (grpo.perception_calibration on [B, M, G]), advantages are taken over the
last axis (grpo.group_advantages), and agent i is updated on `agent_batch(result, stage, i)` with advantages
[:, i, :].reshape(B*G). Sharing and fusion samples are never mixed in one group: their prompts differ, so their
baselines differ; with train_stages=("sharing", "fusion") each stage is a separate [B, M, G] block.

Choices where the paper is open (# OPEN: / # OURS: in the code; each lives in one place):
 1. Prompt wording (`PROMPTS`, `ROLES`): short plain instructions a 135M model can follow. The only thing the
    mode changes is the framing of Analysis and Fusion: partner + "combine the ideas" vs competitor + "find the
    mistakes, do better" (ILR-method.md §1 calls this the most likely difference).
 2. Sharing uses evaluate.py's test-time prompt, the same in both modes (Sharing sees no peer, so the mode
    has nothing to frame). So an agent's Sharing answers are exactly its test-time behaviour.
 3. Decoding of Sharing. Training: sampled at `temperature` (greedy would give two copies of one model the same
    solution, and each agent the same solution every epoch). With "sharing" trained, each agent samples G
    answers and the first one is shown to its peers (the G samples are i.i.d., so it is a random one).
    Inference (`multi_agent_answers`): greedy, as the test protocol.
 4. Analysis: 1 answer per agent and question at `temperature`; never trained (it has no gradable answer).
 5. What Fusion sees: the whole discussion — own solution, peers' solutions, own analysis, peers' analyses —
    so an agent also reads what its peers think of its solution. Bounded by choice 7.
 6. Which tokens are trained (`train_stages`; reviewers flagged this ambiguity): default the fusion answers;
    ("sharing", "fusion") adds the Sharing answers as separate groups.
 7. Context bound (`cut_text`): every text quoted in a prompt (own and peers', solutions and analyses) is cut to
    `peer_token_budget` tokens of the READING agent's tokenizer (agents may use different tokenizers), keeping
    the head (3/4: the approach) and the tail (1/4: the final answer, where \\boxed{} is) around a "[...]"
    marker. A Fusion prompt then holds at most 2*M*(budget + 5) tokens plus the question and the instructions.
 8. More than two agents (the paper's open question): every peer's text is shown, labelled "Partner 1", "Partner
    2", ... in agent order, skipping the reader; one mode per question for all agents (irt.question_mode).
 9. Debate (Table 4 baseline, Du et al. 2023 "Improving Factuality and Reasoning through Multiagent Debate"):
    one round — each agent sees its own first answer and all others' (cut as in 7) and revises.
10. Multi-agent inference: the first answers are greedy and identical for single, debate and idea3 (same
    prompt), so they are computed once and reused; the interaction stages run at `temperature` (0 = greedy).
    Two copies of one model with greedy decoding give identical answers at every stage (so `generate_stage`
    generates them once): use temperature > 0 to make them differ.
11. Seeds: each (stage, agent) generate call gets its own seed (`stage_seed`), so two copies of one model
    sample differently from the same prompt. A call for several adapter agents (choice 12) takes the seed of its
    first agent.
12. Agents that are LoRA adapters on one shared base (`ilr.py --use_peft`: adapters.AgentView of one PeftModel,
    one tokenizer) generate a stage in ONE llm.generate call on the PeftModel, each prompt with its agent's
    adapter (PEFT's adapter_names), when that runs fewer batches than one call per agent (`merges_batches`: an
    agent's rows do not fill `batch_size`, e.g. ilr's defaults B = 2, G = 4, batch_size 64). Where each agent's
    rows fill their batches anyway it keeps one call per agent: PEFT's per-row adapters then only add work
    (SmolLM2 on a CPU: 9-17 % faster when batches merge, 9-16 % slower when not; adapters.py choice 6). Greedy answers
    are those of one call per agent (tests/test_adapters.py checks it); the SAMPLED answers of a merged call
    differ from the per-agent path's (one random stream for the group's rows, and batches mix agents), but stay
    seeded per step, so a run is reproducible and resumes exactly. Agents of different bases and whole models
    keep one call each; `BATCH_ADAPTERS = False` gives one call per agent everywhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import adapters
import evaluate
import llm  # llm.generate is looked up at call time, so tests can count the calls
import ranks

MODES = ("cooperation", "competition")              # PAPER: the two interaction modes (irt.py chooses)
STAGES = ("sharing", "analysis", "fusion")          # PAPER: Idea Sharing -> Idea Analysis -> Idea Fusion
TRAINABLE_STAGES = ("sharing", "fusion")            # OURS (choice 4): analysis has no gradable answer
TAIL_FRACTION = 0.25                                # OURS (choice 7): share of the budget kept from the end
CUT_MARK = "\n[...]\n"                              # OURS (choice 7): shows the reader that text was cut
BATCH_ADAPTERS = True                               # OURS (choice 12): False = one generate call per agent

# ----------------------------------------------------------------------------------------------------------
# 1) The prompts — all their text is here
# ----------------------------------------------------------------------------------------------------------

# OPEN (choice 1): the paper's prompts are not public. OURS: `intro` frames the relation to the peers, `task`
# says what to write. {peer}/{peers} = "partner"/"partners" or "competitor"/"competitors" (ROLES),
# {peers_own} = "partner's"/"partners'" (possessive), {answer_format} = how the final answer is written
# (ANSWER_FORMAT, by record kind).
ROLES = {"cooperation": "partner", "competition": "competitor", "debate": "other agent"}
PROMPTS = {
    ("analysis", "cooperation"): {
        "intro": "You and your {peers} are solving the same problem together, as a team.",
        "task": ("Analyse these solutions step by step. Say which steps are correct, what each solution does "
                 "that another misses, and how the ideas can be combined into one correct solution. "
                 "Do not write a final answer yet.")},
    ("analysis", "competition"): {
        "intro": "You and your {peers} are competing on the same problem: the best solution wins.",
        "task": ("Examine these solutions critically. Find every mistake or weak step, above all in your "
                 "{peers_own} work, and say how to do better. Do not write a final answer yet.")},
    ("fusion", "cooperation"): {
        "intro": "You and your {peers} are solving the same problem together, as a team.",
        "task": ("Now combine the best ideas of this discussion into one final solution. "
                 "Reason step by step, and {answer_format}.")},
    ("fusion", "competition"): {
        "intro": "You and your {peers} are competing on the same problem: the best solution wins.",
        "task": ("Now write a final solution that is better than your {peers_own} work: avoid the mistakes "
                 "found above. Reason step by step, and {answer_format}.")},
    ("debate", None): {                             # OURS (choice 9): Du et al. (2023)'s one-round revision
        "intro": "Several agents solved the same problem.",
        "task": ("Use the {peers_own} reasoning as additional advice and check every step. Give your "
                 "updated solution. Reason step by step, and {answer_format}.")},
}
ANSWER_FORMAT = {"math": "put your final answer within \\boxed{}",     # as evaluate.PROMPTS["math"]
                 "code": "write the final Python function in a ```python code block"}
PROBLEM_HEADING = "Problem:"


def peer_labels(role: str, num_peers: int) -> list[str]:
    """How the peers are named in a prompt: "Your partner" for one peer, "Partner 1", "Partner 2", ... else.

    >>> peer_labels("partner", 1), peer_labels("competitor", 2)
    (['Your partner'], ['Competitor 1', 'Competitor 2'])
    """
    if num_peers == 1:
        return [f"Your {role}"]
    return [f"{role[0].upper()}{role[1:]} {j + 1}" for j in range(num_peers)]  # OURS (choice 8)


def possessive(name: str) -> str:
    """A heading's owner: "Your partner" -> "Your partner's".

    >>> possessive("Your partner"), possessive("Partner 2")
    ("Your partner's", "Partner 2's")
    """
    return name + "'s"


def discussion_prompt(key: tuple, question: str, sections: Sequence[tuple[str, str]], num_peers: int,
                      kind: str = "math") -> str:
    """The one layout of every Analysis / Fusion / debate prompt: intro, the problem, the quoted texts, the task.

    key: a PROMPTS key; sections: (heading, text) pairs quoted in order (texts already cut to the budget).

    >>> print(discussion_prompt(("analysis", "competition"), "1+1?", [("Your solution", "2")], num_peers=1))
    You and your competitor are competing on the same problem: the best solution wins.
    <BLANKLINE>
    Problem:
    1+1?
    <BLANKLINE>
    Your solution:
    2
    <BLANKLINE>
    Examine these solutions critically. Find every mistake or weak step, above all in your competitor's work, and say how to do better. Do not write a final answer yet.
    """  # noqa: E501 (a doctest's expected output is one line)
    role = ROLES[key[1] or key[0]]
    words = dict(peers=role if num_peers == 1 else role + "s",
                 peers_own=role + "'s" if num_peers == 1 else role + "s'", answer_format=ANSWER_FORMAT[kind])
    template = PROMPTS[key]
    parts = [template["intro"].format(**words), f"{PROBLEM_HEADING}\n{question.strip()}"]
    parts += [f"{heading}:\n{text.strip()}" for heading, text in sections]
    return "\n\n".join(parts + [template["task"].format(**words)])


def sharing_prompt(record: dict) -> str:
    """Stage 1, Idea Sharing: the test-time prompt of evaluate.py, the same in both modes (choice 2).

    >>> sharing_prompt({"kind": "math", "question": "What is 1+1?"}) == evaluate.test_prompt(
    ...     {"kind": "math", "question": "What is 1+1?"})
    True
    """
    return evaluate.test_prompt(record)


def analysis_prompt(question: str, own_solution: str, peer_solutions: Sequence[str], mode: str,
                    kind: str = "math") -> str:
    """Stage 2, Idea Analysis: agent i reads its solution and its M-1 peers' solutions (texts already cut).

    >>> p = analysis_prompt("What is 2+2?", "It is 4.", ["It is 5.", "It is 4."], "cooperation")
    >>> "your partners" in p and "Partner 2's solution:\\nIt is 4." in p and "Your solution:\\nIt is 4." in p
    True
    """
    labels = peer_labels(ROLES[mode], len(peer_solutions))
    sections = [("Your solution", own_solution)]
    sections += [(f"{possessive(label)} solution", text) for label, text in zip(labels, peer_solutions)]
    return discussion_prompt(("analysis", mode), question, sections, len(peer_solutions), kind)


def fusion_prompt(question: str, own_solution: str, peer_solutions: Sequence[str], own_analysis: str,
                  peer_analyses: Sequence[str], mode: str, kind: str = "math") -> str:
    r"""Stage 3, Idea Fusion: agent i reads the whole discussion (choice 5) and writes its final answer.

    >>> p = fusion_prompt("What is 2+2?", "4", ["5"], "Mine is right.", ["Yours is wrong."], "competition")
    >>> heads = ["Your solution:", "Your competitor's solution:", "Your analysis:", "Your competitor's analysis:"]
    >>> [p.index(h) for h in heads] == sorted(p.index(h) for h in heads) and p.endswith("within \\boxed{}.")
    True
    """
    if len(peer_solutions) != len(peer_analyses):
        raise ValueError(f"{len(peer_solutions)} peer solutions but {len(peer_analyses)} peer analyses")
    labels = peer_labels(ROLES[mode], len(peer_solutions))
    sections = [("Your solution", own_solution)]
    sections += [(f"{possessive(label)} solution", text) for label, text in zip(labels, peer_solutions)]
    sections += [("Your analysis", own_analysis)]
    sections += [(f"{possessive(label)} analysis", text) for label, text in zip(labels, peer_analyses)]
    return discussion_prompt(("fusion", mode), question, sections, len(peer_solutions), kind)


def debate_prompt(question: str, own_answer: str, peer_answers: Sequence[str], kind: str = "math") -> str:
    """Debate (Table 4 baseline, choice 9): agent i sees its own first answer and the others', and revises.

    >>> p = debate_prompt("What is 2+2?", "4", ["5"])
    >>> "Your previous solution:\\n4" in p and "Other agent's solution:\\n5" in p and "\\\\boxed{}" in p
    True
    """
    labels = ["Other agent"] if len(peer_answers) == 1 else peer_labels("other agent", len(peer_answers))
    sections = [("Your previous solution", own_answer)]
    sections += [(f"{possessive(label)} solution", text) for label, text in zip(labels, peer_answers)]
    return discussion_prompt(("debate", None), question, sections, len(peer_answers), kind)


# ----------------------------------------------------------------------------------------------------------
# 2) Bounded contexts: cut quoted texts to a token budget (choice 7)
# ----------------------------------------------------------------------------------------------------------

def budget_split(num_tokens: int, budget: int | None, tail_fraction: float = TAIL_FRACTION) -> tuple[int, int]:
    """(head, tail) token counts kept of a `num_tokens`-long text under `budget`; (num_tokens, 0) = no cut.

    >>> budget_split(100, 200), budget_split(100, 40), budget_split(100, None), budget_split(100, 1)
    ((100, 0), (30, 10), (100, 0), (1, 0))
    """
    if not budget or num_tokens <= budget:
        return num_tokens, 0
    tail = int(budget * tail_fraction)              # OURS: the tail holds the final answer
    return budget - tail, tail


def cut_text(text: str, tokenizer, budget: int | None, tail_fraction: float = TAIL_FRACTION) -> str:
    """`text` cut to `budget` tokens of `tokenizer` (head + CUT_MARK + tail); unchanged if it fits."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]                 # [T]
    head, tail = budget_split(len(ids), budget, tail_fraction)
    if head == len(ids):
        return text
    kept = tokenizer.decode(ids[:head], skip_special_tokens=True)
    if tail:
        kept += CUT_MARK + tokenizer.decode(ids[len(ids) - tail:], skip_special_tokens=True)
    else:
        kept += CUT_MARK.rstrip()
    return kept


# ----------------------------------------------------------------------------------------------------------
# 3) The protocol: one generate call per agent per stage, over all B questions (adapters of one base: one call)
# ----------------------------------------------------------------------------------------------------------

class Sample(NamedTuple):
    """One trained completion: exactly the ids the generator produced (grpo.pack_batch takes them as they are)."""
    prompt_ids: list[int]       # [P] chat template applied, no padding
    completion_ids: list[int]   # [T] ends with EOS if the model stopped
    text: str                   # the decoded completion (special tokens removed)
    finished: bool              # EOS before max_new_tokens


@dataclass
class Idea3Result:
    """What run_idea3 returns.

    transcripts[b]: {"id", "question", "mode", "agents": [M] names, "sharing": [M] texts, "analysis": [M] texts,
                     "fusion": [M][G] texts} — the sharing text is the one the peers saw.
    samples[stage][i][b]: agent i's G Samples on question b, for each stage in train_stages. One GRPO group.
    stats: tokens, seconds and longest prompt per stage, under the prefix "idea3/".
    """
    transcripts: list[dict]
    samples: dict[str, list[list[list[Sample]]]]
    stats: dict


def as_record(question, b: int = 0) -> dict:
    """A question as a data.py record: records pass through, a str becomes a math record without an answer."""
    if isinstance(question, dict):
        return question
    return {"id": f"q{b}", "question": str(question), "answer": "", "kind": "math", "meta": {}}


def agent_name(agent, i: int) -> str:
    return getattr(agent[0], "name_or_path_ilr", None) or f"agent{i + 1}"


def stage_seed(seed: int | None, stage: str, i: int) -> int | None:
    """A seed per (stage, agent) generate call (choice 11); None stays None. "update" seeds agent i's GRPO update
    (ilr.train_step: dropout draws the same in one process as in its own rank, ranks.py).

    >>> stage_seed(0, "sharing", 0), stage_seed(0, "sharing", 1), stage_seed(3, "fusion", 1)
    (0, 1, 3201)
    """
    order = STAGES + ("debate", "update")
    return None if seed is None else seed * 1000 + 100 * order.index(stage) + i


def peers_of(texts: Sequence[str], i: int) -> list[str]:
    """All texts but agent i's, in agent order (choice 8).

    >>> peers_of(["a", "b", "c"], 1)
    ['a', 'c']
    """
    return [t for j, t in enumerate(texts) if j != i]


def generate_stage(agents, prompts, stage: str, n: int, temperature: float, max_new_tokens: int, seed,
                   batch_size: int, progress: bool) -> list[llm.Generation]:
    """One llm.generate call per agent over its B prompts (prompts[i][b]); -> [M] Generations.

    OURS (choice 10): greedy decoding of the same (model, tokenizer) objects on the same prompts gives the same
    output, so it is generated once and shared (copies of one model, e.g. the single answers).
    OURS (choice 12): agents that are adapters of one shared base (ilr --use_peft) generate in one call where
    that runs fewer batches (call_groups).
    With one agent per process (torchrun, ranks.py) each process generates for the agent it holds and receives
    the other agents' Generations: every process then has all M, as one process would.
    """
    keys = [(id(model), id(tokenizer), tuple(prompts[i])) if temperature <= 0 else i
            for i, (model, tokenizer) in enumerate(agents)]                               # [M] choice 10
    first = [keys.index(key) for key in keys]                                             # [M] whose output i takes
    unique = [i for i in range(len(agents)) if first[i] == i and ranks.owns(i)]           # this process's calls
    done = {}
    for group in call_groups(agents, prompts, unique, n, temperature, batch_size):
        gens = generate_together(agents, prompts, group, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, progress=progress, seed=stage_seed(seed, stage, group[0]))
        done |= dict(zip(group, gens))
    return ranks.each_agent(len(agents), lambda i: done[first[i]])                      # [M], in agent order


def adapter_groups(agents, indices: Sequence[int]) -> list[list[int]]:
    """`indices` of `agents` grouped by generate call (choice 12): the adapters.AgentView agents of one PeftModel
    and tokenizer together, in agent order; every other agent alone.

    >>> one, two = object(), object()
    >>> views = [adapters.AgentView(one, "agent0"), adapters.AgentView(two, "agent1"), adapters.AgentView(one, "a2")]
    >>> adapter_groups([(v, "tok") for v in views] + [("a whole model", "tok")], [0, 1, 2, 3])
    [[0, 2], [1], [3]]
    """
    groups: dict = {}
    for i in indices:
        model, tokenizer = agents[i]
        view = type(model) is adapters.AgentView                       # not a ReferenceView (adapters off)
        groups.setdefault((id(model.peft_model), id(tokenizer)) if view else ("alone", i), []).append(i)
    return list(groups.values())


def merges_batches(sizes: Sequence[int], n: int, temperature: float, batch_size: int) -> bool:
    """True when one llm.generate over the prompts of all agents (sizes[i] prompts each) runs fewer batches, i.e.
    fewer decoding loops, than one call per agent (choice 12).

    >>> merges_batches([4, 4], 1, 0.0, 16), merges_batches([2, 2], 4, 1.0, 64), merges_batches([4, 4], 4, 1.0, 16)
    (True, True, False)
    """
    per_batch = llm.prompts_per_batch(n, temperature, batch_size)
    batches = lambda num_prompts: -(-num_prompts // per_batch)                       # ceil
    return batches(sum(sizes)) < sum(batches(size) for size in sizes)


def call_groups(agents, prompts, indices: Sequence[int], n: int, temperature: float,
                batch_size: int) -> list[list[int]]:
    """The llm.generate calls of a stage as lists of agent `indices` (choice 12): the adapter agents of one base
    (adapter_groups) in one call where that merges batches (merges_batches), every other agent in a call alone."""
    calls = []
    for group in adapter_groups(agents, indices) if BATCH_ADAPTERS else [[i] for i in indices]:
        together = merges_batches([len(prompts[i]) for i in group], n, temperature, batch_size)
        calls += [group] if together else [[i] for i in group]
    return calls


def split_generation(gen: llm.Generation, sizes: Sequence[int]) -> list[llm.Generation]:
    """A Generation over sum(sizes) prompts, cut into consecutive parts of `sizes` prompts (one per agent).

    >>> gen = llm.Generation([["a"], ["b"], ["c"]], [[1], [2], [3]], [[[4]], [[5]], [[6]]], [[1], [0], [1]])
    >>> [part.texts for part in split_generation(gen, [1, 2])]
    [[['a']], [['b'], ['c']]]
    """
    bounds = list(itertools.accumulate(sizes, initial=0))
    return [llm.Generation(*(getattr(gen, f.name)[lo:hi] for f in dataclasses.fields(gen)))
            for lo, hi in zip(bounds, bounds[1:])]


def generate_together(agents, prompts, group: Sequence[int], seed, **settings) -> list[llm.Generation]:
    """One llm.generate call for the agents of `group` (adapter_groups): -> [len(group)] Generations. One agent:
    its own model, as always. Several (adapters of one PeftModel): the PeftModel on all their prompts, each with
    its agent's adapter, under ONE seed (choice 11): sampled answers differ from one call per agent, greedy ones not."""
    model, tokenizer = agents[group[0]]
    if len(group) == 1:
        return [llm.generate(model, tokenizer, prompts[group[0]], seed=seed, **settings)]
    names = [agents[i][0].adapter for i in group for _ in prompts[i]]                 # [sum B_i]
    gen = llm.generate(model.peft_model, tokenizer, [p for i in group for p in prompts[i]], seed=seed,
                       adapter_names=names, **settings)
    return split_generation(gen, [len(prompts[i]) for i in group])


def cut_for_readers(agents, texts: Sequence[Sequence[str]], budget: int | None) -> list[list[list[str]]]:
    """texts[j][b] cut with each reader's tokenizer: -> cut[i][j][b] = text of agent j as agent i reads it."""
    cache: dict = {}                                # agents sharing one tokenizer cut once
    out = []
    for _, tokenizer in agents:
        if id(tokenizer) not in cache:
            cache[id(tokenizer)] = [[cut_text(t, tokenizer, budget) for t in row] for row in texts]
        out.append(cache[id(tokenizer)])
    return out


def check_inputs(agents, records, modes, num_generations, temperature, train_stages, sharing_texts):
    if len(agents) < 2:
        raise ValueError(f"Idea3 needs at least 2 agents, got {len(agents)}")
    if len(modes) != len(records):
        raise ValueError(f"{len(records)} questions but {len(modes)} modes")
    bad = sorted({m for m in modes if m not in MODES})
    if bad:
        raise ValueError(f"unknown mode(s) {bad}: use {MODES}")
    if any(s not in TRAINABLE_STAGES for s in train_stages):
        raise ValueError(f"train_stages must be among {TRAINABLE_STAGES}, got {tuple(train_stages)}")
    if num_generations < 1 or (num_generations > 1 and temperature <= 0):
        raise ValueError("num_generations > 1 needs temperature > 0 (greedy samples are identical)")
    if sharing_texts is not None and "sharing" in train_stages:
        raise ValueError("sharing_texts replaces the Sharing stage, so it cannot be trained")


def run_idea3(agents: Sequence[tuple], questions: Sequence, modes: Sequence[str], num_generations: int = 8,
              temperature: float = 1.0, max_new_tokens: int = 256, analysis_max_new_tokens: int | None = None,
              peer_token_budget: int | None = 256, train_stages: Sequence[str] = ("fusion",),
              seed: int | None = 0, batch_size: int = 16, sharing_texts: Sequence[Sequence[str]] | None = None,
              progress: bool = False) -> Idea3Result:
    """Idea3 for M >= 2 agents on B questions: Sharing -> Analysis -> Fusion, each stage one generate per agent.

    agents: M (model, tokenizer) pairs (may repeat one pair; may differ in tokenizer); questions: B str or records;
    modes: B of "cooperation" / "competition"; num_generations: G final answers per agent and question
    (TRL's name); temperature: sampling temperature of every stage (0 = greedy, only with G = 1);
    max_new_tokens: T of the Sharing and Fusion answers; analysis_max_new_tokens: T of Analysis (None = same);
    peer_token_budget: tokens kept of each quoted text (choice 7; None = no cut); train_stages: which stages
    return GRPO samples (choice 6); sharing_texts: [M][B] precomputed Sharing answers (inference, choice 10).
    """
    records = [as_record(q, b) for b, q in enumerate(questions)]
    check_inputs(agents, records, modes, num_generations, temperature, train_stages, sharing_texts)
    M, B, G = len(agents), len(records), num_generations
    questions = [r["question"] for r in records]                                          # [B]
    kinds = [r.get("kind", "math") for r in records]                                      # [B]
    gens, stats = {}, {}

    def timed(stage, prompts, n, max_tokens):
        start = time.monotonic()
        gens[stage] = generate_stage(agents, prompts, stage, n, temperature, max_tokens, seed, batch_size, progress)
        stats[f"idea3/{stage}_tokens"] = sum(g.num_tokens for g in gens[stage])
        stats[f"idea3/{stage}_seconds"] = round(time.monotonic() - start, 2)
        stats[f"idea3/{stage}_max_prompt_tokens"] = max(len(p) for g in gens[stage] for p in g.prompt_ids)

    # 1) Idea Sharing: each agent solves each question alone (choice 2, 3). [M][B]
    if sharing_texts is None:
        n_sharing = G if "sharing" in train_stages else 1
        timed("sharing", [[sharing_prompt(r) for r in records]] * M, n_sharing, max_new_tokens)
        sharing_texts = [[g.texts[b][0] for b in range(B)] for g in gens["sharing"]]      # the shown sample
    solutions = cut_for_readers(agents, sharing_texts, peer_token_budget)                 # [M reader][M][B]

    # 2) Idea Analysis: each agent analyses its own and its peers' solutions, framed by the mode.
    column = lambda rows, b: [row[b] for row in rows]                                     # [M] texts of question b
    prompts = [[analysis_prompt(questions[b], solutions[i][i][b], peers_of(column(solutions[i], b), i), modes[b],
                                kinds[b]) for b in range(B)] for i in range(M)]           # [M][B]
    timed("analysis", prompts, 1, analysis_max_new_tokens or max_new_tokens)
    analysis_texts = [[g.texts[b][0] for b in range(B)] for g in gens["analysis"]]        # [M][B]
    analyses = cut_for_readers(agents, analysis_texts, peer_token_budget)                 # [M reader][M][B]

    # 3) Idea Fusion: each agent reads the whole discussion (choice 5) and writes G final answers.
    prompts = [[fusion_prompt(questions[b], solutions[i][i][b], peers_of(column(solutions[i], b), i),
                              analyses[i][i][b], peers_of(column(analyses[i], b), i), modes[b], kinds[b])
                for b in range(B)] for i in range(M)]                                     # [M][B]
    timed("fusion", prompts, G, max_new_tokens)

    transcripts = [{"id": records[b]["id"], "question": questions[b], "mode": modes[b],
                    "agents": [agent_name(a, i) for i, a in enumerate(agents)],
                    "sharing": column(sharing_texts, b), "analysis": column(analysis_texts, b),
                    "fusion": [g.texts[b] for g in gens["fusion"]]} for b in range(B)]
    samples = {stage: [[[Sample(g.prompt_ids[b], g.completion_ids[b][k], g.texts[b][k], g.finished[b][k])
                         for k in range(len(g.texts[b]))] for b in range(B)] for g in gens[stage]]
               for stage in train_stages}                                                 # [stage][M][B][G]
    return Idea3Result(transcripts, samples, stats)


# ----------------------------------------------------------------------------------------------------------
# 4) For the trainer: rewards [B, M, G] and each agent's flat batch, in the same order
# ----------------------------------------------------------------------------------------------------------

def stage_rewards(result: Idea3Result, records: Sequence[dict], stage: str = "fusion",
                  reward_fn: Callable[[str, dict], float] = evaluate.reward):
    """Rewards of a trained stage as a tensor [B, M, G] (reward_fn(completion, record), evaluate.reward).

    Feed it to grpo.perception_calibration (Eq. 5 over the M axis), then grpo.group_advantages (over G).
    """
    import torch

    per_agent = result.samples[stage]                                                     # [M][B][G]
    return torch.tensor([[[reward_fn(s.text, records[b]) for s in per_agent[i][b]] for i in range(len(per_agent))]
                         for b in range(len(records))], dtype=torch.float32)              # [B, M, G]


def agent_batch(result: Idea3Result, stage: str, i: int) -> tuple[list[list[int]], list[list[int]]]:
    """Agent i's (prompt_ids, completion_ids) of a stage, B*G rows in b-major order: row b*G + k is sample k of
    question b, matching advantages[:, i, :].reshape(-1). Pass them to grpo.pack_batch."""
    rows = [s for per_question in result.samples[stage][i] for s in per_question]         # [B*G]
    return [s.prompt_ids for s in rows], [s.completion_ids for s in rows]


# ----------------------------------------------------------------------------------------------------------
# 5) Multi-agent inference (paper Table 4): single / debate / idea3, each agent's final answer
# ----------------------------------------------------------------------------------------------------------

INFERENCE_MODES = ("single", "debate", "idea3")


@dataclass
class MultiAgentAnswers:
    answers: list[list[str]]    # [M][B] each agent's final answer per record
    transcripts: list[dict]     # [B] what was said (format_transcript prints them)
    first_answers: list[list[str]]  # [M][B] the greedy answers alone (shared by the three modes, choice 10)


def answers_alone(agents, records, max_new_tokens: int = 256, batch_size: int = 16,
                  progress: bool = False) -> list[list[str]]:
    """Each agent answers each record alone with the test-time prompt, greedy: [M][B] (copies of one model are
    generated once, see generate_stage)."""
    prompts = [sharing_prompt(r) for r in records]                                        # [B]
    gens = generate_stage(agents, [prompts] * len(agents), "sharing", 1, 0.0, max_new_tokens, None, batch_size,
                          progress)
    return [[row[0] for row in g.texts] for g in gens]


def debate_round(agents, records, first_answers, temperature: float = 0.0, max_new_tokens: int = 256,
                 peer_token_budget: int | None = 256, seed: int | None = 0, batch_size: int = 16,
                 progress: bool = False) -> list[list[str]]:
    """One debate round: each agent revises after seeing the others' first answers (choice 9): [M][B]."""
    M, B = len(agents), len(records)
    cut = cut_for_readers(agents, first_answers, peer_token_budget)                       # [M reader][M][B]
    prompts = [[debate_prompt(records[b]["question"], cut[i][i][b], peers_of([cut[i][j][b] for j in range(M)], i),
                              records[b].get("kind", "math")) for b in range(B)] for i in range(M)]
    gens = generate_stage(agents, prompts, "debate", 1, temperature, max_new_tokens, seed, batch_size, progress)
    return [[g.texts[b][0] for b in range(B)] for g in gens]


def multi_agent_answers(agents: Sequence[tuple], records: Sequence, mode: str = "single",
                        interaction: str = "cooperation", temperature: float = 0.0, max_new_tokens: int = 256,
                        analysis_max_new_tokens: int | None = None, peer_token_budget: int | None = 256,
                        seed: int | None = 0, batch_size: int = 16, first_answers=None,
                        progress: bool = False) -> MultiAgentAnswers:
    """Each agent's final answer to each record, answering `mode` = single | debate | idea3 (paper Table 4).

    single: the test-time prompt, greedy. debate: single, then one revision round. idea3: single's answers are
    the Sharing stage, then Analysis and Fusion with 1 final answer each, all questions in mode `interaction`.
    temperature: of the interaction stages only (0 = greedy; choice 10). first_answers: [M][B] single answers
    to reuse (they are identical for the three modes).
    """
    if mode not in INFERENCE_MODES:
        raise ValueError(f"mode must be one of {INFERENCE_MODES}, got {mode!r}")
    records = [as_record(q, b) for b, q in enumerate(records)]
    names = [agent_name(a, i) for i, a in enumerate(agents)]
    first = first_answers or answers_alone(agents, records, max_new_tokens, batch_size, progress)   # [M][B]
    column = lambda rows, b: [row[b] for row in rows]
    base = lambda b: {"id": records[b]["id"], "question": records[b]["question"], "mode": mode, "agents": names}
    if mode == "single":
        return MultiAgentAnswers(first, [base(b) | {"answer": column(first, b)} for b in range(len(records))],
                                 first)
    if mode == "debate":
        revised = debate_round(agents, records, first, temperature, max_new_tokens, peer_token_budget, seed,
                               batch_size, progress)
        return MultiAgentAnswers(revised, [base(b) | {"answer": column(first, b), "revision": column(revised, b)}
                                           for b in range(len(records))], first)
    result = run_idea3(agents, records, [interaction] * len(records), num_generations=1, temperature=temperature,
                       max_new_tokens=max_new_tokens, analysis_max_new_tokens=analysis_max_new_tokens,
                       peer_token_budget=peer_token_budget, train_stages=(), seed=seed, batch_size=batch_size,
                       sharing_texts=first, progress=progress)
    answers = [[t["fusion"][i][0] for t in result.transcripts] for i in range(len(agents))]
    return MultiAgentAnswers(answers, [t | {"mode": f"idea3 ({interaction})"} for t in result.transcripts], first)


# ----------------------------------------------------------------------------------------------------------
# 6) Reading a transcript
# ----------------------------------------------------------------------------------------------------------

TRANSCRIPT_STAGES = {"answer": "Answer (alone)", "sharing": "1. Idea Sharing", "analysis": "2. Idea Analysis",
                     "fusion": "3. Idea Fusion", "revision": "Debate: revision"}


def shorten(text: str, max_chars: int | None) -> str:
    """`text` trimmed to about max_chars (None = unchanged), saying how much was left out.

    >>> shorten("abcdefghij", 6), shorten("abc", 6), shorten("abc", None)
    ('abc [... 7 chars]', 'abc', 'abc')
    """
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars // 2] + f" [... {len(text) - max_chars // 2} chars]"


def format_transcript(t: dict, max_chars: int | None = None) -> str:
    """A transcript (run_idea3 / multi_agent_answers) as readable text; max_chars trims each text (logs).

    "grades" (ilr.graded_transcripts), {stage: [M][G] lines}, ends each answer's label with its line.

    >>> print(format_transcript({"question": "1+1?", "mode": "competition", "agents": ["a", "b"],
    ...                          "sharing": ["2", "3"], "fusion": [["2"], ["2", "two"]],
    ...                          "grades": {"fusion": [["right"], ["right", "wrong"]]}}))
    ==== 1+1?
    mode: competition | agents: a, b
    ---- 1. Idea Sharing
    [agent 1: a]
    2
    [agent 2: b]
    3
    ---- 3. Idea Fusion
    [agent 1: a] right
    2
    [agent 2: b, answer 1/2] right
    2
    [agent 2: b, answer 2/2] wrong
    two
    """
    names = t.get("agents") or [f"agent{i + 1}" for i in range(len(t.get("sharing") or t.get("answer")))]
    grades = t.get("grades", {})
    lines = [f"==== {t['question'].strip()}", f"mode: {t.get('mode', '?')} | agents: {', '.join(names)}"]
    for key, title in TRANSCRIPT_STAGES.items():
        if key not in t:
            continue
        lines.append(f"---- {title}")
        for i, entry in enumerate(t[key]):
            texts = entry if isinstance(entry, list) else [entry]
            for k, text in enumerate(texts):
                which = f", answer {k + 1}/{len(texts)}" if len(texts) > 1 else ""
                grade = f" {grades[key][i][k]}" if key in grades else ""
                lines += [f"[agent {i + 1}: {names[i]}{which}]{grade}", shorten(text.strip(), max_chars)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# 7) Command line: `show` (one transcript per mode), `compare` (Table 4: single / debate / idea3) and `eval`
#    (the same with evaluate.py's flags, over several benchmarks)
# ----------------------------------------------------------------------------------------------------------

@dataclass
class RunConfig(llm.DeviceConfig):  # --device, --bf16, --fp16
    models: str = field(default="smollm2-135m,smollm2-135m", metadata={
        "help": "M comma-separated llm.load_model names ('tiny' = llm.tiny_model(), tests); a repeated name "
                "is loaded once and shared"})
    benchmark: str = field(default="gsm8k", metadata={"help": "a data.py benchmark name"})
    data_dir: str | None = field(default=None, metadata={"help": "local data folder (`python data.py download`)"})
    temperature: float = field(default=0.0, metadata={
        "help": "temperature of the interaction stages (analysis, fusion, debate revision); 0 = greedy, which "
                "makes copies of one model answer identically"})
    max_new_tokens: int = field(default=256, metadata={"help": "T of every answer (alone, revision, fusion)"})
    analysis_max_new_tokens: int = field(default=256, metadata={"help": "T of an Idea Analysis"})
    peer_token_budget: int = field(default=256, metadata={"help": "tokens kept of each quoted text; 0 = no cut"})
    batch_size: int = field(default=16, metadata={"help": "sequences per forward pass (llm.generate)"})
    seed: int = field(default=0, metadata={"help": "sampling seed (one per stage and agent is derived)"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads"})
    out: str | None = field(default=None, metadata={"help": "write results and transcripts to this JSON file"})
    progress: bool = field(default=False, metadata={"help": "tqdm progress bars"})


@dataclass
class ShowConfig(RunConfig):
    index: int = field(default=0, metadata={"help": "which record of the benchmark (0 = the first)"})
    modes: str = field(default="cooperation,competition", metadata={"help": "interaction modes to show"})
    num_generations: int = field(default=1, metadata={"help": "G final answers per agent (G > 1 needs "
                                                              "--temperature > 0)"})


@dataclass
class CompareConfig(RunConfig):
    limit: int | None = field(default=50, metadata={"help": "first N records", "type": int})
    modes: str = field(default="single,debate,idea3", metadata={"help": "inference modes (paper Table 4)"})
    interaction: str = field(default="cooperation", metadata={"help": "idea3's mode for every question"})


def parse_config(cls, argv: Sequence[str], description: str):
    """--field-name value for every field of ShowConfig / CompareConfig (bools are flags)."""
    return llm.parse_config(cls, argv, description, prog=f"idea3.py {cls.__name__[:-6].lower()}")


def load_agents(spec: str, device: str = "auto", bf16: bool | None = None,
                fp16: bool | None = None) -> list[tuple]:
    """'a,b,a' -> M (model, tokenizer) pairs; a repeated name reuses the loaded object (one copy of weights)."""
    loaded: dict = {}
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in loaded:
            loaded[name] = llm.load_for_cli(name, device, bf16, fp16)
    return [loaded[name] for name in names]


def setup(cfg: RunConfig, limit: int | None):
    import torch
    import data

    torch.set_num_threads(cfg.threads)
    try:
        records = data.load_benchmark(cfg.benchmark, data_dir=cfg.data_dir, limit=limit)
    except data.DataError as e:
        raise SystemExit(f"error: {e}")
    agents = load_agents(cfg.models, cfg.device, cfg.bf16, cfg.fp16)
    if len(agents) < 2:
        raise SystemExit("error: --models needs at least 2 names (M >= 2)")
    return records, agents


def identical_note(agents, temperature: float) -> str | None:
    if temperature <= 0 and len({(id(m), id(t)) for m, t in agents}) < len(agents):
        return ("note: some agents are the same model and decoding is greedy (--temperature 0), so their "
                "answers are identical at every stage; use --temperature > 0 to let copies differ")
    return None


def show(argv: Sequence[str]) -> list[dict]:
    cfg = parse_config(ShowConfig, argv, "Print one Idea3 transcript per interaction mode.")
    records, agents = setup(cfg, cfg.index + 1)
    record = records[cfg.index]
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]
    result = run_idea3(agents, [record] * len(modes), modes, num_generations=cfg.num_generations,   # one batch
                       temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                       analysis_max_new_tokens=cfg.analysis_max_new_tokens,
                       peer_token_budget=cfg.peer_token_budget or None, train_stages=(), seed=cfg.seed,
                       batch_size=cfg.batch_size, progress=cfg.progress)
    transcripts = []
    for t in result.transcripts:
        t = t | {"gold": record["answer"], "correct": [[evaluate.reward(a, record) for a in row]
                                                       for row in t["fusion"]]}
        transcripts.append(t)
        print(format_transcript(t))
        print(f"---- gold answer: {record['answer']} | fusion answers correct (per agent): {t['correct']}\n",
              flush=True)
    if note := identical_note(agents, cfg.temperature):
        print(note)
    if cfg.out:
        Path(cfg.out).write_text(json.dumps({"config": dataclasses.asdict(cfg), "stats": result.stats,
                                             "transcripts": transcripts}, indent=2))
    return transcripts


def format_table(table: dict[str, list[float]], names: Sequence[str], items: int) -> str:
    """Accuracy (%) per mode (rows) and agent (columns), with the mean over agents.

    >>> print(format_table({"single": [10.0, 20.0]}, ["a", "b"], 10))
    mode (10 items)       agent 1: a  agent 2: b      mean
    ------------------------------------------------------
    single                     10.00       20.00     15.00
    """
    heads = [f"agent {i + 1}: {n}" for i, n in enumerate(names)]
    width = max(12, *(len(h) + 2 for h in heads))
    head = f"{f'mode ({items} items)':<20}" + "".join(f"{h:>{width}}" for h in heads) + f"{'mean':>10}"
    lines = [head, "-" * len(head)]
    for mode, accuracies in table.items():
        lines.append(f"{mode:<20}" + "".join(f"{a:>{width}.2f}" for a in accuracies)
                     + f"{sum(accuracies) / len(accuracies):>10.2f}")
    return "\n".join(lines)


def compare(argv: Sequence[str]) -> dict:
    cfg = parse_config(CompareConfig, argv, "Table 4: each agent's accuracy answering single / debate / idea3.")
    records, agents = setup(cfg, cfg.limit)
    names = [agent_name(a, i) for i, a in enumerate(agents)]
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]
    first, table, rows, seconds = None, {}, {}, {}
    for mode in modes:
        start = time.monotonic()
        out = multi_agent_answers(agents, records, mode, cfg.interaction, cfg.temperature, cfg.max_new_tokens,
                                  cfg.analysis_max_new_tokens, cfg.peer_token_budget or None, cfg.seed,
                                  cfg.batch_size, first, cfg.progress)
        first = out.first_answers                                         # reused by the next modes
        correct = [[evaluate.reward(a, r) for a, r in zip(row, records)] for row in out.answers]   # [M][B]
        label = f"idea3 ({cfg.interaction})" if mode == "idea3" else mode
        table[label] = [100 * sum(c) / len(c) for c in correct]
        seconds[label] = round(time.monotonic() - start, 1)
        rows[label] = [t | {"correct": [c[b] for c in correct], "gold": records[b]["answer"]}
                       for b, t in enumerate(out.transcripts)]
        print(f"{label}: accuracy per agent {[round(a, 2) for a in table[label]]} ({seconds[label]} s)", flush=True)
    print(format_table(table, names, len(records)))
    if note := identical_note(agents, cfg.temperature):
        print(note)
    result = {"config": dataclasses.asdict(cfg), "agents": names, "items": len(records), "accuracy": table,
              "seconds": seconds, "transcripts": rows}
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(result, indent=2))
        print(f"results and transcripts: {cfg.out}")
    return result


@dataclass
class EvalConfig(llm.DeviceConfig):  # --device, --bf16, --fp16
    """evaluate.py's flags for M models answering together: `compare --modes single,<mode>` per benchmark."""
    model: str = field(default="smollm2-135m,smollm2-135m", metadata={"help": "M >= 2 comma-separated model names"})
    mode: str = field(default="idea3", metadata={"help": "debate | idea3: how the models answer together; each is "
                                                         "also scored alone (single)"})
    benchmarks: str = field(default="gsm8k", metadata={"help": "comma-separated data.py names (evaluate.py's "
                                                              "aliases: aime, paper)"})
    data_dir: str | None = field(default=None, metadata={"help": "local data folder (`python data.py download`)"})
    limit: int | None = field(default=None, metadata={"help": "first N records of each benchmark", "type": int})
    temperature: float = field(default=0.0, metadata={"help": "of the interaction stages; 0 = greedy"})
    max_new_tokens: int = field(default=512, metadata={"help": "T of every answer"})
    batch_size: int = field(default=64, metadata={"help": "sequences per forward pass"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads"})
    out: str | None = field(default=None, metadata={"help": "results folder: <benchmark>-<mode>.json each"})
    quiet: bool = field(default=False, metadata={"help": "no tqdm progress bars"})


def check_eval_config(cfg: EvalConfig) -> str | None:
    """The first bad setting of `idea3.py eval` as one line (None if all are good), before any model loads."""
    import data

    names = evaluate.benchmark_names(cfg.benchmarks)
    unknown = [n for n in names if n not in data.BENCHMARKS]
    problems = [
        (cfg.mode in ("debate", "idea3"), f"--mode must be debate or idea3 (got {cfg.mode!r})"),
        (len([m for m in cfg.model.split(",") if m.strip()]) >= 2,
         f"--mode {cfg.mode} needs --model with at least two comma-separated names"),
        (bool(names), f"--benchmarks must name at least one benchmark (got {cfg.benchmarks!r})"),
        (not unknown, f"--benchmarks: unknown benchmark {unknown[0]!r}" if unknown else ""),
        (cfg.data_dir is None or Path(cfg.data_dir).is_dir(), f"--data-dir {cfg.data_dir}: no such directory"),
        (cfg.limit is None or cfg.limit >= 1, f"--limit must be >= 1 (leave it out for all), got {cfg.limit}"),
        (cfg.temperature >= 0, f"--temperature must be >= 0 (0 = greedy), got {cfg.temperature}"),
    ]
    return next((message for ok, message in problems if not ok), None)


def evaluate_together(argv: Sequence[str]) -> dict:
    """Multi-agent inference (paper Table 4) with evaluate.py's flags: for each benchmark, every model's
    accuracy answering alone (single) and answering together (--mode debate | idea3), through `compare`.
    Returns {benchmark: compare's result}; a bad setting is one line (exit 2) before any model loads."""
    cfg = llm.parse_config(EvalConfig, argv, "Evaluate M models answering together (paper Table 4).",
                           prog="idea3.py eval")
    if problem := check_eval_config(cfg):
        print(f"idea3.py eval: error: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
    results = {}
    for name in evaluate.benchmark_names(cfg.benchmarks):
        argv = ["--models", cfg.model, "--benchmark", name, "--modes", f"single,{cfg.mode}",
                "--temperature", str(cfg.temperature), "--max-new-tokens", str(cfg.max_new_tokens),
                "--batch-size", str(cfg.batch_size), "--seed", str(cfg.seed), "--threads", str(cfg.threads)]
        argv += ["--data-dir", cfg.data_dir] if cfg.data_dir else []
        argv += ["--limit", str(cfg.limit)] if cfg.limit else []
        argv += ["--out", str(Path(cfg.out) / f"{name}-{cfg.mode}.json")] if cfg.out else []
        argv += [] if cfg.quiet else ["--progress"]
        argv += ["--device", cfg.device] + [f"--{'' if on else 'no-'}{flag}" for flag, on in
                                            (("bf16", cfg.bf16), ("fp16", cfg.fp16)) if on is not None]
        results[name] = compare(argv)
    return results


COMMANDS = {"show": show, "compare": compare, "eval": evaluate_together}


def main(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python idea3.py {{{','.join(COMMANDS)}}} [--help]")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
