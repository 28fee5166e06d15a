"""
bench/adapters_generate.py — two LoRA agents on one shared base: one llm.generate per agent against ONE batched
llm.generate with per-row adapters (PEFT's `adapter_names`, inference only), and idea3's default, which batches only
where that runs fewer batches (idea3 choice 12, merges_batches), on Idea3-like workloads (issue 21, item 4).

    .venv/bin/python bench/adapters_generate.py tiny 32              # MODEL NEW_TOKENS [REPEATS]
    .venv/bin/python bench/adapters_generate.py smollm2-135m 32 2

Paths: "per-agent" (idea3.BATCH_ADAPTERS = False), "one call" (merges_batches forced True: always one call for the
base), "default" (idea3 as it runs: one call where batches merge, else per agent).
Workloads, each timed on the three paths in turn, REPEATS times (default 3), at 1 thread; each line gives the CPU
seconds of the process (time.process_time: with one thread, what other jobs on a shared machine do not inflate)
and the wall seconds:
  greedy       Idea Sharing as at inference: B = 4 questions per agent, n = 1, temperature 0, batch_size 16 (one
               call holds both agents' 8 rows in one chunk; one call per agent runs 2 chunks of 4); it first checks
               that the three paths give the same greedy ids.
  sampled      the same prompts, n = 4 samples at temperature 1.0, batch_size 16: each agent's 16 rows fill a
               chunk, so one call runs 2 chunks of 16 rows like per-agent (merges nothing).
  ilr step     one run_idea3 with ilr.py's defaults: B = 2, G = 4, temperature 1.0, Fusion trained, batch_size 64
               (answers of 32 tokens, peer budget 32): every stage's rows of both agents fit one chunk.
  demo step    one run_idea3 as `ilr.py --preset demo --use_peft` runs it: B = 2, G = 8, temperature 0.7, Sharing
               and Fusion trained, batch_size 16: Sharing and Fusion fill a chunk per agent, Analysis does not.
Sampled answers differ between the paths (one random stream per merged call), so the tokens generated are printed
beside the seconds. The adapters are given random non-zero B matrices, so that the two agents differ.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import idea3  # noqa: E402
import ilr  # noqa: E402

QUESTIONS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How "
             "many clips did Natalia sell altogether in April and May?",
             "What is 7 * 6?",
             "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much "
             "did she earn?",
             "A box holds 12 eggs. How many eggs are in 5 boxes?"]


PATHS = {"per-agent": dict(BATCH_ADAPTERS=False), "one call": dict(merges_batches=lambda *args: True),
         "default": {}}
DEFAULTS = {"BATCH_ADAPTERS": idea3.BATCH_ADAPTERS, "merges_batches": idea3.merges_batches}


def timed(path: str, work):
    """(CPU seconds, wall seconds, result) of `work()` with idea3 set for `path` (PATHS)."""
    for key, value in (DEFAULTS | PATHS[path]).items():
        setattr(idea3, key, value)
    cpu, wall = time.process_time(), time.perf_counter()
    out = work()
    return time.process_time() - cpu, time.perf_counter() - wall, out


def main(name: str = "tiny", new_tokens: int = 32, repeats: int = 3):
    torch.set_num_threads(1)
    agents = ilr.make_agents(ilr.Config(models=name, device="cpu", use_peft=True))
    for seed, a in enumerate(agents):                                  # two different, non-zero adapters
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in a.model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.5 if name == "tiny" else 0.02))
    pairs = [(a.model, a.tokenizer) for a in agents]
    prompts = [[idea3.sharing_prompt(idea3.as_record(q)) for q in QUESTIONS]] * len(pairs)        # [M][B]
    tokens = lambda gens: sum(g.num_tokens for g in gens)

    def stage(n, temperature):
        gens = idea3.generate_stage(pairs, prompts, "sharing", n, temperature, new_tokens, 0, 16, False)
        return gens, f"{tokens(gens)} tokens"

    def step(G, temperature, train_stages, batch_size):
        stats = idea3.run_idea3(pairs, QUESTIONS[:2], ["cooperation", "competition"], num_generations=G,
                                temperature=temperature, max_new_tokens=new_tokens, peer_token_budget=32,
                                train_stages=train_stages, seed=0, batch_size=batch_size).stats
        return stats, ", ".join(f"{s} {stats[f'idea3/{s}_seconds']:.2f} s / {stats[f'idea3/{s}_tokens']} tok"
                                for s in idea3.STAGES)

    workloads = {"greedy": lambda: stage(1, 0.0), "sampled": lambda: stage(4, 1.0),
                 "ilr step": lambda: step(4, 1.0, ("fusion",), 64),
                 "demo step": lambda: step(8, 0.7, ("sharing", "fusion"), 16)}
    ids = [[g.completion_ids for g in timed(path, workloads["greedy"])[2][0]] for path in PATHS]
    print(f"{name}: same greedy ids on the three paths: {ids[0] == ids[1] == ids[2]}", flush=True)
    for _ in range(repeats):
        for label, work in workloads.items():
            for path in PATHS:
                cpu, wall, (_, what) = timed(path, work)
                print(f"{name} {label:<9} {path:<9}: {cpu:6.2f} s CPU, {wall:6.2f} s wall ({what})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny", int(sys.argv[2]) if len(sys.argv) > 2 else 32,
         int(sys.argv[3]) if len(sys.argv) > 3 else 3)
