"""
bench/fsdp_probe.py — does FSDP2 (`fully_shard`) run our model code on this CPU with gloo? (issue 23, item 4;
docs/MULTI_GPU.md). Two ranks shard the tiny model over a 2-rank mesh, compare its greedy generation with the
unsharded model's, and try one grpo_step on it.

    OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node 2 bench/fsdp_probe.py
"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import grpo  # noqa: E402
import llm  # noqa: E402


def main():
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    whole, tok = llm.tiny_model(seed=0)
    model, _ = llm.tiny_model(seed=0)
    for layer in model.model.layers:                 # each decoder layer, then the root (embeddings, head)
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    prompts = ["What is 2 + 3?", "Say hi."]
    a = llm.generate(whole, tok, prompts, n=1, max_new_tokens=6)
    b = llm.generate(model, tok, prompts, n=1, max_new_tokens=6)
    print(f"rank {dist.get_rank()}: sharded greedy ids == whole model's: {a.completion_ids == b.completion_ids}",
          flush=True)
    s = llm.generate(model, tok, prompts, n=2, temperature=1.0, max_new_tokens=6, seed=3)
    batch = grpo.pack_batch([p for p in s.prompt_ids for _ in range(2)], [c for row in s.completion_ids for c in row],
                            tok.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    try:
        stats = grpo.grpo_step(model, optimizer, batch, torch.tensor([1.0, -1.0, 0.5, -0.5]), max_grad_norm=1.0)
        print(f"rank {dist.get_rank()}: grpo_step ran: loss {stats['loss']:.4f}", flush=True)
    except Exception as e:
        print(f"rank {dist.get_rank()}: grpo_step fails: {type(e).__name__}: {str(e).splitlines()[0][:160]}",
              flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
