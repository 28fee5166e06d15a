"""
bench/adapters_generate.py — two LoRA agents on one shared base: one batched `generate` with per-row adapters
(PEFT's `adapter_names`, inference only) against one `generate` per agent, greedy, same prompts (issue 21, item 4).

    .venv/bin/python bench/adapters_generate.py tiny 32            # MODEL NEW_TOKENS
    .venv/bin/python bench/adapters_generate.py smollm2-135m 32

Both sides decode exactly NEW_TOKENS tokens (min_new_tokens), so they do the same work; it first checks that they
give the same greedy ids. The adapters are given random non-zero B matrices, so that the two agents differ.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ilr  # noqa: E402
import llm  # noqa: E402

PROMPTS = ["What is 2 + 3?", "Name a prime number.", "What is 7 * 6? Answer briefly.", "Say hello."]


def main(name: str = "tiny", new_tokens: int = 32):
    torch.set_num_threads(1)
    agents = ilr.make_agents(ilr.Config(models=name, device="cpu", use_peft=True))
    for seed, a in enumerate(agents):                                  # two different, non-zero adapters
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in a.model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.5 if name == "tiny" else 0.02))
    tok, peft = agents[0].tokenizer, agents[0].model.peft_model
    ids = [llm.chat_prompt_ids(tok, p) for p in PROMPTS]
    W = max(map(len, ids))
    input_ids = torch.tensor([[tok.pad_token_id] * (W - len(x)) + x for x in ids])         # (B, P) left padded
    mask = torch.tensor([[0] * (W - len(x)) + [1] * len(x) for x in ids])
    config = llm.generation_config(peft, tok, 0.0, 1.0, new_tokens)
    config.min_new_tokens = new_tokens

    def per_agent():                                                   # M calls of B rows
        outs = []
        for a in agents:
            with llm.own_generation_config(a.model, config):
                outs.append(a.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config))
        return torch.cat(outs)[:, W:]

    def batched():                                                     # one call of M*B rows
        names = [a.model.adapter for a in agents for _ in PROMPTS]
        with llm.own_generation_config(peft, config):
            return peft.generate(input_ids=input_ids.repeat(len(agents), 1), attention_mask=mask.repeat(
                len(agents), 1), generation_config=config, adapter_names=names)[:, W:]

    with torch.no_grad():
        print("same greedy ids:", torch.equal(per_agent(), batched()))
        for run in (per_agent, batched, per_agent, batched):
            t = time.perf_counter()
            run()
            print(f"{name} {run.__name__}: {time.perf_counter() - t:.2f} s for {len(agents)} agents x "
                  f"{len(PROMPTS)} prompts x {new_tokens} tokens", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny", int(sys.argv[2]) if len(sys.argv) > 2 else 32)
