"""
bench/reward_clip_probe.py — Eq. 5's clip share under --reward accuracy vs digits on the demo's samples (untrained
model): 16 ladder training questions (levels 1-4, 4 each), two 'agents' = SmolLM2-135M sampled with two seeds (as
ILR's Sharing stage: the test prompt, T 0.7, 32 tokens, G 8). docs/RESULTS.md, "Eq. 5 with a multi-level reward".

    OMP_NUM_THREADS=1 .venv/bin/python bench/reward_clip_probe.py        # ~5 min on one core
"""
import collections
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import data  # noqa: E402
import evaluate  # noqa: E402
import grpo  # noqa: E402
import ilr  # noqa: E402
import llm  # noqa: E402

t0 = time.time()
model, tok = llm.load_model("smollm2-135m", device="cpu", precision="fp32")
recs = data.ladder_problems(16, seed=0, levels=(1, 2, 3, 4), split="train")
prompts = [evaluate.test_prompt(r) for r in recs]
outs = [llm.generate(model, tok, prompts, n=8, temperature=0.7, max_new_tokens=32, batch_size=16, seed=s)
        for s in (0, 1)]
for reward in ("accuracy", "digits"):
    R = torch.tensor([[[ilr.answer_reward(t, r, 0.1, reward) for t in out.texts[b]] for out in outs]
                      for b, r in enumerate(recs)])                                 # [B=16, M=2, G=8]
    plain = grpo.group_advantages(R)
    cal = grpo.group_advantages(grpo.perception_calibration(R))
    changed = ((plain - cal).abs() > 1e-2).any(-1).float().mean().item()
    levels = collections.Counter(round(x, 3) for x in R.flatten().tolist())
    print(f"{reward}: clip share {grpo.calibration_clip_share(R):.3f} | groups whose std advantages Eq. 5 changes "
          f"(> 0.01) {changed:.3f} | reward levels {dict(sorted(levels.items()))}")
print(f"{time.time() - t0:.0f} s")
