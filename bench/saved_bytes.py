"""bench/saved_bytes.py — how many bytes per logit autograd keeps for the GRPO backward (docs/RESULTS.md).

Runs grpo.per_token_logps on the tiny model under bf16 autocast (on the CPU) and adds up the tensors autograd
saves whose last axis is the vocabulary, leaving out the lm_head's bf16 weight copy (a per-weight cost, counted in
the table separately). Prints bytes per logit of the micro-batch: 2 (the bf16 logits, which
grpo.selective_log_softmax keeps to recompute the softmax in its backward; plain autograd also kept every row's
fp32 copy: 6 until issue 26). `--fp32`: the same without autocast, 4 (fp32 logits).

    .venv/bin/python bench/saved_bytes.py [--fp32]
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import grpo  # noqa: E402
import llm  # noqa: E402


def main(N: int = 3, P: int = 10, T: int = 10, temperature: float = 0.7, precision: str = "bf16") -> float:
    model, _ = llm.tiny_model(seed=0, precision=precision)
    model.train()
    V, weight = model.config.vocab_size, model.lm_head.weight
    ids = torch.randint(0, 1000, (N, P + T))
    saved = {}

    def pack(t):
        if t.dim() and t.shape[-1] == V and t.numel() != weight.numel():  # per-logit tensors only
            saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        grpo.per_token_logps(model, ids, torch.ones_like(ids), T, temperature=temperature)
    per_logit = sum(saved.values()) / (N * T * V)
    print(f"autograd keeps {per_logit:.1f} B per logit ({precision}; {N} rows x {T} completion tokens x {V} "
          f"vocabulary)")
    return per_logit


if __name__ == "__main__":
    main(precision="fp32" if "--fp32" in sys.argv[1:] else "bf16")
