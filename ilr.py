"""
ilr.py — the ILR co-training loop, in one file (Interactive Learning for LLM Reasoning, arXiv 2509.26306).

    python ilr.py --preset demo                               # 2 x SmolLM2-135M on the synthetic task, CPU
    python ilr.py --preset demo --method grpo                 # the single-agent GRPO baseline, same questions
    python ilr.py --preset gpu-small                          # a ~0.5B pair on MATH, one 24 GB GPU
    python ilr.py --preset demo --interaction random --cooperation_ratio 1.0   # Figure 3: pure cooperation
    python ilr.py --resume runs/demo                          # continue a run exactly where it stopped
    python ilr.py plot runs/demo                              # training curves -> runs/demo/curves.png
    python ilr.py plot runs/cmp-ilr runs/cmp-grpo             # several runs on one picture -> runs/compare.png
    python ilr.py --help                                      # every setting with its default, the presets

The algorithm, one training step (the numbered sections of `train_step` below):
    1) IRT: choose each question's mode — cooperation if P = σ(1.7 (γ_i − D_q)) < 0.5, else competition  (irt.py)
    2) Idea3: the M agents share, analyse and fuse ideas; each writes G final answers                 (idea3.py)
    3) Grade: reward = correct (the evaluator's grader) + a small format term                         (evaluate.py)
    4) Perception Calibration, Eq. 5: each agent's rewards shifted by its peers' reward statistics     (grpo.py)
    5) GRPO: group advantages, one clipped policy-gradient update per agent                           (grpo.py)
    6) Log: one line per step, metrics.jsonl (and --report_to's trackers), transcripts, checkpoints
Before training (once, cached on disk): each agent's ability γ_i on a validation set and the questions' difficulty
D_q by self-ranking (irt.py). After training: each agent is evaluated ALONE (evaluate.py), base vs trained.

Where this file departs from, or fills in, the paper (each is a setting of `Config`, changed in one place):
1. OPEN (the paper's reward is not public): reward = 1 if correct else 0, plus `format_reward` (0.1) if the answer
   is in the expected format (\\boxed{} for math, a code block for code). With a purely binary reward Eq. 5 cannot
   change std-normalised advantages (README, "Why calibration needs a multi-level reward"); the format term is the
   smallest change that gives it something to do.
2. OPEN: which Idea3 tokens are trained. OURS: the Fusion answers (`train_stages="fusion"`); "sharing,fusion" also
   trains G sampled Sharing answers, which use the test-time prompt (each stage is its own GRPO group).
3. OURS: two agents that start from the same model are two independent copies (own weights, optimizer, reference);
   with `--use_peft` each is a LoRA adapter on ONE shared frozen base, the reference the base alone (adapters.py).
4. OURS: every random choice of step s (questions, sampling, random modes) is seeded by (seed, s), so `--resume`
   reproduces a straight run exactly; checkpoints also keep the RNG states.
5. `--method grpo` is the paper's single-agent baseline: each agent trains alone on the same questions with the
   test-time prompt, no interaction, no calibration.
6. OURS, as TRL / HF Trainer: `--bf16` mixed precision (fp32 weights and AdamW states, bf16 autocast forward
   passes), the default on a CUDA GPU with bf16; `--fp16` (with a gradient scaler) on a GPU without it; fp32 on the
   CPU (llm.py, header choice 4). The agents generate in eval() and switch to train() only for their update.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import adapters
import data
import evaluate
import grpo
import idea3
import irt
import llm
import ranks
import trackers


# ----------------------------------------------------------------------------------------------------------
# Config: one dataclass, one help line per field (paper symbol in brackets). Presets below override it.
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Config(llm.DeviceConfig):  # --device, --bf16, --fp16 (shared with every command line; llm.DeviceConfig)
    # --- method and ablations (Figure 3, Table 3)
    method: str = field(default="ilr", metadata={"help": "'ilr' (Dynamic Interaction + Idea3 + Perception "
                                                         "Calibration) or 'grpo' (each agent alone: the baseline)"})
    models: str = field(default="smollm2-135m", metadata={"help": "comma-separated llm.load_model names, one per "
                        "agent, or one name for all; 'tiny' = a random test model"})
    num_agents: int = field(default=2, metadata={"help": "number of interacting agents [m] (>= 2 for ilr)"})
    interaction: str = field(default="dynamic", metadata={"help": "'dynamic' (IRT), 'cooperation', 'competition' "
                             "or 'random' (cooperate with probability cooperation_ratio)"})
    cooperation_ratio: float = field(default=0.5, metadata={"help": "[p] for interaction='random' (Figure 3)"})
    calibration: bool = field(default=True, metadata={"help": "Perception Calibration, Eq. 5 (--no-calibration "
                                                              "turns it off)"})
    train_stages: str = field(default="fusion", metadata={"help": "Idea3 stages whose answers are trained: "
                                                                  "'fusion' or 'sharing,fusion'"})
    format_reward: float = field(default=0.1, metadata={"help": "reward added for a well-formed answer (\\boxed{} "
                                 "or a code block); 0 = binary reward, which makes Eq. 5 a no-op"})
    reward: str = field(default="accuracy", metadata={"help": "the reward: 'accuracy' (1 if the grader says correct, "
                        "else 0; TRL's accuracy_reward) or 'digits' (partial credit on integer answers: 1 if correct, "
                        "else 0.5 x the share of digit places right; ladder, synthetic); --format_reward adds to both"})
    # --- data
    train_data: str = field(default="synthetic", metadata={"help": "data.py benchmark to train on (train split)"})
    allow_test_training: bool = field(default=False, metadata={"help": "allow --train_data to be a benchmark "
                                      "without a training split (trains on its test set: contaminated scores)"})
    train_levels: str = field(default="1,2,3,4,5", metadata={"help": "synthetic: levels (steps), ladder: levels "
                              "(1-5, data.LADDER_LEVELS) to train on and measure gamma on"})
    num_train: int = field(default=0, metadata={"help": "training questions (0 = all)"})
    val_data: str = field(default="synthetic", metadata={"help": "benchmark for each agent's ability [gamma]"})
    num_val: int = field(default=100, metadata={"help": "validation questions for gamma (paper: 1,000 MATH)"})
    data_dir: str | None = field(default=None, metadata={"help": "local benchmark folder (layout of shared/data); "
                                                                 "default: the Hugging Face Hub"})
    # --- IRT / self-ranking
    irt_scale: float = field(default=irt.IRT_SCALE, metadata={"help": "IRT scaling constant (1.7: normal-ogive)"})
    irt_threshold: float = field(default=irt.MODE_THRESHOLD, metadata={"help": "cooperate if P < threshold"})
    rank_group_size: int = field(default=4, metadata={"help": "self-ranking: questions per group [n]"})
    rank_splits: int = field(default=3, metadata={"help": "self-ranking: random splits averaged [S]"})
    difficulty: str = field(default="self_rank", metadata={"help": "[D_q] 'self_rank' (the paper: the agents rank "
                            "the questions) or 'level' (the data's known level, normalised to [0, 1]: the control "
                            "when self-ranking is weak; synthetic, ladder, math)"})
    # --- GRPO (TRL names)
    max_steps: int = field(default=10, metadata={"help": "training steps"})
    questions_per_step: int = field(default=2, metadata={"help": "questions per step [B]"})
    num_generations: int = field(default=4, metadata={"help": "final answers per agent per question [G]"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate"})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; 0.0 = no reference model is loaded"})
    use_bias_correction_kl: bool = field(default=True, metadata={"help": "KL term times the importance ratio "
                                         "(TRL's default: unbiased reverse-KL gradient); matters only if beta > 0"})
    skip_zero_advantage_kl_approx: bool = field(default=False, metadata={"help": "beta > 0: skip zero-advantage "
                                                "rows anyway, dropping their KL term (faster, not TRL's loss)"})
    epsilon: float = field(default=0.2, metadata={"help": "clip range (low) of the ratio"})
    epsilon_high: float = field(default=0.2, metadata={"help": "clip range (high) of the ratio"})
    loss_type: str = field(default="grpo", metadata={"help": "'grpo' (mean per sequence) or 'dapo' (per token)"})
    scale_rewards: str = field(default="std", metadata={"help": "advantages: 'std' ((r-mean)/std) or 'none'"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = none)"})
    micro_batch_size: int = field(default=8, metadata={"help": "sequences per forward/backward (memory)"})
    shared_prefix: bool = field(default=True, metadata={"help": "training forward encodes each prompt once for its "
                                "G answers (exact; plain forward under gradient_checkpointing)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of trained answers"})
    max_completion_length: int = field(default=128, metadata={"help": "new tokens per answer / analysis"})
    peer_token_budget: int = field(default=128, metadata={"help": "peer text kept in Idea3 prompts (tokens)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for activation memory"})
    torch_dtype: str = field(default="float32", metadata={"help": "dtype of the loaded weights: 'float32' (the "
                             "master weights of mixed precision) or 'bfloat16' (pure bf16 weights and AdamW states: "
                             "half the memory, but most updates at lr 1e-6 round away; prints a warning)"})
    # --- adapters (LoRA / QLoRA, TRL's ModelConfig names) and the optimizer (HF Trainer's `optim`)
    use_peft: bool = field(default=False, metadata={"help": "train a LoRA adapter per agent instead of the whole "
                           "model; agents with the same model share ONE frozen base; the reference (beta > 0) is "
                           "the base with adapters disabled (no second copy)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank r (use_peft)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha: the update is (alpha / r) B A"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch's input (TRL's default)"})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "layers that get an adapter: "
                                     "'all-linear' (every linear layer of the blocks, MLP included; not the output "
                                     "head) or comma-separated module names, e.g. 'q_proj,v_proj'"})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: the frozen base in 4-bit NF4 "
                               "(bitsandbytes); needs --use_peft"})
    optim: str = field(default="adamw_torch", metadata={"help": "optimizer: 'adamw_torch' (fp32 states, 8 B per "
                       "trained parameter) or 'adamw_8bit' (bitsandbytes' 8-bit AdamW states, 2 B per parameter)"})
    dry_run: bool = field(default=False, metadata={"help": "print the memory plan of this run (per phase, per "
                          "card size) from the models' configs, without loading any weights, and exit"})
    # --- evaluation (each agent alone, after training)
    eval_benchmarks: str = field(default="synthetic", metadata={"help": "comma-separated benchmarks"})
    eval_limit: int = field(default=50, metadata={"help": "questions per benchmark (0 = all)"})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "new tokens per evaluation answer"})
    eval_base: bool = field(default=True, metadata={"help": "also evaluate the untrained models (base row)"})
    eval_steps: int = field(default=0, metadata={"help": "also evaluate each agent alone before training and every "
                            "K steps (0 = only after training), on the first --eval_curve_limit questions: the "
                            "held-out curve (eval/<benchmark>/agent<i> in metrics.jsonl, `ilr.py plot`)"})
    eval_curve_limit: int = field(default=50, metadata={"help": "questions per benchmark of each --eval_steps "
                                  "evaluation (a fixed subset: the first ones of the evaluation set)"})
    # --- run
    output_dir: str = field(default="runs/ilr", metadata={"help": "run directory (config, metrics, checkpoints)"})
    save_steps: int = field(default=5, metadata={"help": "checkpoint every K steps (and at the end, on Ctrl-C)"})
    log_transcript_steps: int = field(default=1, metadata={"help": "write transcripts/stepNNNNN.txt (each trained "
                                      "answer with its grade, rewards and advantage) every K steps"})
    report_to: str = field(default="none", metadata={"help": "also send each step's metrics.jsonl row to: 'none', "
                           "'tensorboard' (RUN/tensorboard), 'wandb', 'trackio', or a comma list (TRL's name; "
                           "trackers.py)"})
    batch_size: int = field(default=64, metadata={"help": "sequences per generation batch (bench/README.md: one "
                                                          "batch of 32 decodes 1.3x faster than two of 16 on a CPU)"})
    seed: int = field(default=0, metadata={"help": "seed of everything random"})
    ddp_timeout: int = field(default=1800, metadata={"help": "torchrun (one agent per rank, ranks.py): seconds a rank "
                             "waits for the others at an exchange before it stops the run (HF Trainer's name)"})


# The MATH run of gpu-small, shared by the card presets below (issue 21): train split, gamma on 1,000 held-out
# MATH questions, the seven benchmarks.
GPU_MATH = dict(train_data="math", val_data="math", num_val=1000, max_steps=300, questions_per_step=8,
                num_generations=8, max_completion_length=512, peer_token_budget=384, beta=0.0,
                gradient_checkpointing=True, eval_limit=0, eval_max_new_tokens=1024, save_steps=25,
                eval_benchmarks="gsm8k,math500,minerva_math,olympiadbench,aime24,aime25,mbpp")
PRESETS = {
    # Two copies of the embedded SmolLM2-135M on the ladder (data.py, levels 1-4), about 8 minutes on 2 CPU cores
    # with both evaluations, and the reward rises: the model learns to answer "7 + 8 = 15" instead of a paragraph
    # that drifts to another number (docs/RESULTS.md, "Demo"). Chosen from measurements: 32-token answers (a
    # rambling answer is cut before its number, so a short right one wins its group), temperature 0.7 (at 1.0 its
    # answers are word salad), G 8 (most groups mixed at levels 1-2), the Sharing answers trained too (they are the
    # test prompt), a learning rate of 2e-5 (1e-6 moves nothing in 12 steps), and the known level as D_q
    # (self-ranking does not rank the ladder: irt.py validate). 150 held-out ladder questions, greedy, before/after.
    "demo": dict(models="smollm2-135m", train_data="ladder", train_levels="1,2,3,4", val_data="ladder",
                 difficulty="level", num_train=64, num_val=24, rank_splits=2, max_steps=12, questions_per_step=2,
                 num_generations=8, temperature=0.7, train_stages="sharing,fusion", max_completion_length=32,
                 peer_token_budget=32, learning_rate=2e-5, save_steps=4,
                 eval_benchmarks="ladder", eval_limit=150, eval_max_new_tokens=48, output_dir="runs/demo",
                 batch_size=16),  # the recorded figures (docs/RESULTS.md) used 16: batching changes float rounding
    # A pair of ~0.5B models of two families on MATH (train split), sized for one 24 GB GPU (docs/RESULTS.md).
    "gpu-small": dict(models="Qwen/Qwen2.5-0.5B-Instruct,HuggingFaceTB/SmolLM2-360M-Instruct",
                      train_data="math", val_data="math", num_val=1000, max_steps=300, questions_per_step=8,
                      num_generations=8, max_completion_length=512, peer_token_budget=384, learning_rate=1e-6,
                      beta=0.0, micro_batch_size=8, gradient_checkpointing=True, batch_size=64,
                      eval_benchmarks="gsm8k,math500,minerva_math,olympiadbench,aime24,aime25,mbpp", eval_limit=0,
                      eval_max_new_tokens=1024, save_steps=25, output_dir="runs/gpu-small"),
    # Presets for the cards users have (issue 21): the agents are LoRA adapters (all linear layers, r 16) on ONE shared
    # base, the reference is that base (no copy), and the learning rate is 10x full fine-tuning's ("LoRA Without
    # Regret": LoRA on all linear layers matches full RL fine-tuning at about 10x the learning rate). Each is sized by
    # memory.py's plan (`python ilr.py --preset NAME --dry_run`; planned peaks in README.md and docs/RESULTS.md):
    # the micro-batch and the generation batch are what make them fit. MATH as gpu-small.
    # 8 GB (RTX 3060 Ti / 4060): two Qwen2.5-1.5B-Instruct adapters on one 4-bit (NF4) base.
    "gpu-8gb": dict(GPU_MATH, models="Qwen/Qwen2.5-1.5B-Instruct", use_peft=True, load_in_4bit=True,
                    torch_dtype="bfloat16", learning_rate=1e-5, micro_batch_size=2, batch_size=32,
                    output_dir="runs/gpu-8gb"),
    # 16 GB, Colab's T4 (15 GiB, no bf16: fp16 with a loss scaler): two Qwen2.5-3B-Instruct adapters, 4-bit base.
    "gpu-16gb": dict(GPU_MATH, models="Qwen/Qwen2.5-3B-Instruct", use_peft=True, load_in_4bit=True, fp16=True,
                     learning_rate=1e-5, micro_batch_size=4, batch_size=32, output_dir="runs/gpu-16gb"),
    # 24 GB (RTX 3090 / 4090, A10): two Qwen2.5-3B-Instruct adapters on one bf16 base (not quantised: exact base).
    "gpu-24gb": dict(GPU_MATH, models="Qwen/Qwen2.5-3B-Instruct", use_peft=True, torch_dtype="bfloat16",
                     learning_rate=1e-5, micro_batch_size=4, batch_size=64, output_dir="runs/gpu-24gb"),
    # The paper's pair size on 24 GB: two Qwen2.5-7B-Instruct adapters on one 4-bit base (QLoRA).
    "paper-7b": dict(GPU_MATH, models="Qwen/Qwen2.5-7B-Instruct", use_peft=True, load_in_4bit=True,
                     torch_dtype="bfloat16", learning_rate=1e-5, micro_batch_size=4, batch_size=32,
                     output_dir="runs/paper-7b"),
    # Tests: the random tiny model, seconds per step.
    "tiny": dict(models="tiny", train_data="synthetic", train_levels="1", num_train=16, num_val=8, max_steps=2,
                 questions_per_step=2, num_generations=4, max_completion_length=8, peer_token_budget=16,
                 micro_batch_size=8, eval_limit=4, eval_max_new_tokens=8, save_steps=1, rank_splits=1,
                 output_dir="runs/tiny"),
}

# One line per preset for `python ilr.py --help` (tests/test_cli.py checks that every preset has one).
PRESET_HELP = {
    "demo": "2 x SmolLM2-135M on the ladder, 12 steps, then each agent alone on 150 held-out questions: "
            "about 8 min on 2 idle CPU cores (make demo)",
    "gpu-small": "Qwen2.5-0.5B + SmolLM2-360M on MATH, 300 steps, the paper's benchmarks after: one 24 GB GPU",
    "gpu-8gb": "2 x Qwen2.5-1.5B as LoRA adapters on one 4-bit base, MATH: planned peak 5.5 GB (--dry_run)",
    "gpu-16gb": "2 x Qwen2.5-3B as LoRA adapters on one 4-bit base, fp16, MATH: Colab's T4, planned peak 11.5 GB",
    "gpu-24gb": "2 x Qwen2.5-3B as LoRA adapters on one bf16 base, MATH: planned peak 14.9 GB",
    "paper-7b": "the paper's pair size: 2 x Qwen2.5-7B as LoRA adapters on one 4-bit base, MATH: planned peak "
                "17.7 GB (24 GB card)",
    "tiny": "a random 2-layer model (llm.tiny_model), seconds per step: checks the plumbing only; rewards ~0 and "
            "random-token transcripts are expected",
}


class ConfigError(ValueError):
    """A bad setting, found before any model is loaded; its message is one line naming the setting."""


# Benchmarks that have a training split (data.load_benchmark(split="train")). Every other one is a test set:
# training on it would report a contaminated score, so it is refused unless --allow_test_training says so.
TRAIN_SPLITS = ("synthetic", "ladder", "gsm8k", "math")
REWARDS = ("accuracy", "digits")           # --reward (answer_reward)
DIGIT_BENCHMARKS = ("ladder", "synthetic")  # --reward digits: gold answers are non-negative integers by construction
OPTIMIZERS = ("adamw_torch", "adamw_8bit")   # HF Trainer's `optim` names we implement
MAX_AGENTS = 99     # idea3.stage_seed gives each stage 100 seeds, one per agent: agents 0..99 never collide


def check_config(cfg: Config) -> None:
    """Every field of Config, checked in one place: fail at start, with one line, on a setting that cannot work.
    One rule per field or group of fields (tests/test_ilr.py has a bad value for each)."""
    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)

    def positive(*names):           # counts that must be >= 1
        for name in names:
            need(getattr(cfg, name) >= 1, f"--{name} must be >= 1, got {getattr(cfg, name)}")

    def finite(*names):             # argparse's float() accepts "nan" and "inf": no setting means them
        for name in names:
            need(math.isfinite(getattr(cfg, name)), f"--{name} must be a finite number, got {getattr(cfg, name)}")

    finite("cooperation_ratio", "format_reward", "irt_scale", "irt_threshold", "learning_rate", "beta", "epsilon",
           "epsilon_high", "max_grad_norm", "temperature")
    # --- method and ablations
    need(cfg.method in ("ilr", "grpo"), f"--method must be 'ilr' or 'grpo', got {cfg.method!r}")
    need(1 <= cfg.num_agents <= MAX_AGENTS, f"--num_agents must be in 1..{MAX_AGENTS}, got {cfg.num_agents}")
    need(cfg.method == "grpo" or cfg.num_agents >= 2,
         f"--method ilr needs --num_agents >= 2 (got {cfg.num_agents}); use --method grpo for one agent")
    given = [n.strip() for n in cfg.models.split(",")]
    need(all(given), f"--models must name one model, or one per agent, without empty names (got {cfg.models!r})")
    need(len(given) in (1, cfg.num_agents),
         f"--models names {len(given)} models but --num_agents is {cfg.num_agents} (give one, or one per agent)")
    for name in set(given):
        try:
            if name != "tiny":
                llm.model_source(name)                         # the names llm.load_model accepts: the same test
        except llm.ModelError:
            need(False, f"unknown model {name!r}: not the embedded {llm.EMBEDDED!r}, 'tiny', a directory or a Hub "
                        f"id (owner/name)")
    # --- device and precision
    need(cfg.torch_dtype in llm.TORCH_DTYPES,
         f"--torch_dtype must be one of {', '.join(llm.TORCH_DTYPES)}, got {cfg.torch_dtype!r}")
    try:
        llm.pick_precision(llm.pick_device(cfg.device), cfg.bf16, cfg.fp16)   # e.g. --bf16 on a T4: refused here
    except llm.ModelError as e:
        need(False, str(e))
    need(cfg.interaction in irt.INTERACTIONS,
         f"--interaction must be one of {', '.join(irt.INTERACTIONS)}, got {cfg.interaction!r}")
    need(0.0 <= cfg.cooperation_ratio <= 1.0, f"--cooperation_ratio must be in [0, 1], got {cfg.cooperation_ratio}")
    stages = cfg.train_stages.split(",")
    need(bool(stages) and set(stages) <= {"sharing", "fusion"} and len(set(stages)) == len(stages),
         f"--train_stages must be 'fusion', 'sharing' or 'sharing,fusion', got {cfg.train_stages!r}")
    need(cfg.format_reward >= 0, f"--format_reward must be >= 0, got {cfg.format_reward}")
    need(cfg.reward in REWARDS, f"--reward must be one of {', '.join(REWARDS)}, got {cfg.reward!r}")
    need(cfg.reward != "digits" or cfg.train_data in DIGIT_BENCHMARKS, f"--reward digits is defined for integer "
         f"answers ({', '.join(DIGIT_BENCHMARKS)}), not --train_data {cfg.train_data}")
    # --- data
    for flag, names in (("train_data", [cfg.train_data]), ("val_data", [cfg.val_data]),
                        ("eval_benchmarks", cfg.eval_benchmarks.split(","))):
        for name in names:
            need(name in data.BENCHMARKS, f"--{flag}: unknown benchmark {name!r}; choose from "
                                          f"{', '.join(data.BENCHMARKS)}")
    need(cfg.train_data in TRAIN_SPLITS or cfg.allow_test_training,
         f"--train_data {cfg.train_data} has no training split (only {', '.join(TRAIN_SPLITS)} do): training on "
         f"its test split contaminates every score on it; pass --allow_test_training if that is what you want")
    levels = cfg.train_levels.split(",")
    need(all(x.strip().isdigit() and int(x) >= 1 for x in levels),
         f"--train_levels must be comma-separated step counts >= 1 (e.g. '1,2'), got {cfg.train_levels!r}")
    need(cfg.num_train >= 0, f"--num_train must be >= 0 (0 = all), got {cfg.num_train}")
    need(cfg.num_val >= 1, f"--num_val must be >= 1 (the ability γ is a mean over them), got {cfg.num_val}")
    need(cfg.data_dir is None or Path(cfg.data_dir).is_dir(), f"--data_dir {cfg.data_dir}: no such directory")
    # --- IRT / self-ranking
    need(cfg.difficulty in irt.DIFFICULTIES,
         f"--difficulty must be one of {', '.join(irt.DIFFICULTIES)}, got {cfg.difficulty!r}")
    need(cfg.difficulty != "level" or cfg.train_data in ("synthetic", "ladder", "math"),
         f"--difficulty level needs training questions with a known level (synthetic, ladder, math), "
         f"not {cfg.train_data!r}")
    need("ladder" not in (cfg.train_data, cfg.val_data) or {x.strip() for x in cfg.train_levels.split(",")}
         <= {str(k) for k in data.LADDER_LEVELS},
         f"--train_levels for the ladder must be among {','.join(map(str, data.LADDER_LEVELS))}, "
         f"got {cfg.train_levels!r}")
    need(cfg.irt_scale > 0, f"--irt_scale must be > 0, got {cfg.irt_scale}")
    need(0.0 < cfg.irt_threshold < 1.0, f"--irt_threshold must be in (0, 1) (a probability), got {cfg.irt_threshold}")
    need(cfg.rank_group_size >= 2, f"--rank_group_size must be >= 2 (a ranking needs two questions), got "
                                   f"{cfg.rank_group_size}")
    positive("rank_splits")
    # --- GRPO
    positive("max_steps", "questions_per_step")
    need(cfg.num_generations >= 2, f"--num_generations must be >= 2: GRPO compares a question's answers with each "
                                   f"other (got {cfg.num_generations})")
    need(cfg.learning_rate > 0, f"--learning_rate must be > 0, got {cfg.learning_rate}")
    need(cfg.beta >= 0, f"--beta must be >= 0 (0 = no reference model), got {cfg.beta}")
    need(0 < cfg.epsilon < 1, f"--epsilon must be in (0, 1) (the ratio is clipped to [1 - epsilon, ...]), got "
                              f"{cfg.epsilon}")
    need(cfg.epsilon_high > 0, f"--epsilon_high must be > 0, got {cfg.epsilon_high}")
    need(cfg.loss_type in ("grpo", "dapo"), f"--loss_type must be 'grpo' or 'dapo', got {cfg.loss_type!r}")
    need(cfg.scale_rewards in ("std", "none"), f"--scale_rewards must be 'std' or 'none', got {cfg.scale_rewards!r}")
    need(cfg.max_grad_norm >= 0, f"--max_grad_norm must be >= 0 (0 = no clipping), got {cfg.max_grad_norm}")
    positive("micro_batch_size", "max_completion_length", "peer_token_budget")
    need(cfg.temperature > 0, f"--temperature must be > 0: training samples G different answers (got "
                              f"{cfg.temperature})")
    # --- adapters and optimizer
    positive("lora_r", "lora_alpha")
    need(0.0 <= cfg.lora_dropout < 1.0, f"--lora_dropout must be in [0, 1), got {cfg.lora_dropout}")
    targets = [t.strip() for t in cfg.lora_target_modules.split(",")]
    need(all(t and t.replace("_", "").replace(".", "").replace("-", "").isalnum() for t in targets),
         f"--lora_target_modules must be 'all-linear' or comma-separated module names, got "
         f"{cfg.lora_target_modules!r}")
    need(not cfg.load_in_4bit or cfg.use_peft, "--load_in_4bit needs --use_peft: a 4-bit base cannot be trained "
                                               "itself, only adapters on it (QLoRA)")
    need(cfg.optim in OPTIMIZERS, f"--optim must be one of {', '.join(OPTIMIZERS)}, got {cfg.optim!r}")
    # --- evaluation
    need(cfg.eval_limit >= 0, f"--eval_limit must be >= 0 (0 = all), got {cfg.eval_limit}")
    need(cfg.eval_steps >= 0, f"--eval_steps must be >= 0 (0 = only after training), got {cfg.eval_steps}")
    positive("eval_max_new_tokens", "eval_curve_limit")
    # --- run
    need(bool(cfg.output_dir.strip()), "--output_dir must not be empty")
    positive("save_steps", "log_transcript_steps", "batch_size")
    # --- torchrun: one agent per rank (ranks.py, choice 1)
    positive("ddp_timeout")
    need(ranks.world_size() in (1, len(model_names(cfg))), f"torchrun started {ranks.world_size()} ranks for "
         f"{len(model_names(cfg))} agents: one agent per rank, so --nproc_per_node x --nnodes must be "
         f"{len(model_names(cfg))} (or run one process: python ilr.py ...)")
    need((problem := trackers.check(cfg.report_to)) is None, problem)   # unknown or not installed: one line
    need(cfg.seed >= 0, f"--seed must be >= 0 (numpy's seeds are non-negative), got {cfg.seed}")


def model_names(cfg: Config) -> list[str]:
    names = [n.strip() for n in cfg.models.split(",")]
    return names * cfg.num_agents if len(names) == 1 else names


# ----------------------------------------------------------------------------------------------------------
# Agents: a model, its optimizer and (beta > 0) its frozen reference
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Agent:
    name: str
    model: object
    tokenizer: object
    optimizer: torch.optim.Optimizer
    ref_model: object | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 only: scales the loss so small gradients do not underflow


def load_agent_model(name: str, seed: int):
    """(model, tokenizer) in fp32 on the CPU; make_agents places it (device, precision). Tests swap this function."""
    return llm.tiny_model(seed=seed) if name == "tiny" else llm.load_model(name, device="cpu", precision="fp32")


def make_agents(cfg: Config) -> list[Agent]:
    """The agents, each on the run's device and precision. With one agent per process (torchrun, ranks.py) this
    process builds only the agent it holds; the others are their tokenizer and a `ranks.Elsewhere` model."""
    device = ranks.device(llm.pick_device(cfg.device))      # torchrun on GPUs: cuda:<local rank>
    precision = llm.pick_precision(device, cfg.bf16, cfg.fp16)
    print(f"[ilr] {llm.describe_runtime(device, precision)} (--device {cfg.device})", flush=True)
    if cfg.torch_dtype != "float32" and not cfg.use_peft:   # with adapters only the frozen base is in bf16
        print(f"[ilr] warning: --torch_dtype {cfg.torch_dtype} keeps the weights and AdamW's states in "
              f"{cfg.torch_dtype}: an update much smaller than a weight rounds to nothing (at lr 1e-6 most do); "
              f"mixed precision (--bf16) keeps fp32 weights", flush=True)
    agents = []
    names = model_names(cfg)
    mine = [name if ranks.owns(i) else None for i, name in enumerate(names)]   # None: another rank's agent
    # --use_peft (choice 3): (model, ref_model, tokenizer) per agent, adapter agent{i} on its model's shared base
    with_adapters = adapters.make_adapter_agents(cfg, mine, load_agent_model, device, precision) \
        if cfg.use_peft else None
    for i, name in enumerate(names):
        if mine[i] is None:  # held by rank i: its texts are read with its tokenizer, its results come from there
            agents.append(Agent(f"agent{i}:{name}", None, llm.load_tokenizer(name), None))
            continue
        if with_adapters:
            model, ref, tokenizer = with_adapters[i]
        else:
            # OURS (choice 3): each agent its own copy
            model, tokenizer = load_agent_model(name, cfg.seed)
            llm.place(model, device, precision, llm.TORCH_DTYPES[cfg.torch_dtype])
            ref = None
            if cfg.beta > 0:
                ref, _ = load_agent_model(name, cfg.seed)
                llm.place(ref, device, precision, llm.TORCH_DTYPES[cfg.torch_dtype])
                ref.requires_grad_(False)
            if cfg.gradient_checkpointing:
                model.activation_checkpointing_enable()  # transformers 5.23's name (gradient_... goes in v6)
        model.eval()  # generation happens in eval() (KV cache on); train_step switches to train() for the update
        # fused AdamW: one kernel for all parameters (same algorithm; 0.72 s -> 0.19 s per step for 135M on this
        # CPU, bench/README.md); or --optim adamw_8bit. An adapter agent's parameters() are its adapter's only.
        optimizer = adapters.make_optimizer(model.parameters(), cfg.optim, cfg.learning_rate)
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        agents.append(Agent(f"agent{i}:{name}", model, tokenizer, optimizer, ref, scaler))
    # the names the transcripts give the other ranks' agents (idea3.agent_name reads them off the model)
    shown = ranks.each_agent(len(agents), lambda i: getattr(agents[i].model, "name_or_path_ilr", None))
    for i, a in enumerate(agents):
        if a.model is None:
            a.model = ranks.Elsewhere(i, shown[i])
    return agents


# ----------------------------------------------------------------------------------------------------------
# Rewards (section 3 of the step)
# ----------------------------------------------------------------------------------------------------------

def well_formed(completion: str, record: dict) -> bool:
    """The format term's test: a \\boxed{} answer as the grader reads it (data.last_boxed: non-empty, any of
    \\boxed / \\fbox / \\framebox) for math, or a code block for code.

    >>> well_formed("so \\\\boxed{4}", {"kind": "math"}), well_formed("4", {"kind": "math"})
    (True, False)
    >>> well_formed("\\\\boxed{}", {"kind": "math"}), well_formed("\\\\framebox{5}", {"kind": "math"})
    (False, True)
    """
    if record["kind"] == "code":
        return "```" in completion
    return bool(data.last_boxed(completion))          # as evaluate.extract_answer: an empty box is none


def digit_credit(completion: str, record: dict, correct: float | None = None) -> float:
    """--reward digits (OURS, README "Choices where the paper is open"): partial credit on an integer answer.

        R = 1                                   if the grader says correct
            0.5 · (places right) / max(len p, len g)   else, p = the grader's extracted answer, digits only
            0                                   no answer, or not a non-negative integer

    Places are counted from the right (ones, tens, ...): 47 + 38 = 85 answered 75 (the carry lost) gets 0.25.
    Every wrong answer stays below 0.5, so a right one always wins its group. `correct`: the grader's verdict when
    already known (group_rewards), so that the answer is not graded twice.

    >>> rec = {"kind": "math", "answer": "85", "meta": {"benchmark": "ladder"}}
    >>> [digit_credit(a, rec) for a in ("85", "so 75", "86", "5", "185", "13", "-85", "none")]
    [1.0, 0.25, 0.25, 0.25, 0.3333333333333333, 0.0, 0.0, 0.0]
    """
    if evaluate.reward(completion, record) if correct is None else correct:
        return 1.0
    predicted, _ = evaluate.extract_answer(completion, record["meta"].get("benchmark"))
    gold = record["answer"].strip()
    if not predicted or not predicted.isdigit():
        return 0.0
    right = sum(p == g for p, g in zip(reversed(predicted), reversed(gold)))            # ones, tens, ... aligned
    return 0.5 * right / max(len(predicted), len(gold))


def answer_reward(completion: str, record: dict, format_reward: float, reward: str = "accuracy") -> float:
    """R = score + format_reward · 1[well formed]  (OURS, header choice 1); score = 1[correct] (--reward
    accuracy, the grader's verdict) or digit_credit (--reward digits).

    >>> answer_reward("\\\\boxed{4}", {"kind": "math", "answer": "4", "meta": {}}, 0.1)
    1.1
    >>> answer_reward("\\\\boxed{75}", {"kind": "math", "answer": "85", "meta": {}}, 0.1, "digits")
    0.35
    """
    score = digit_credit(completion, record) if reward == "digits" else evaluate.reward(completion, record)
    return score + (format_reward if well_formed(completion, record) else 0.0)


class Group(NamedTuple):
    """One GRPO group: the G answers of one agent to one question at one Idea3 stage."""
    stage: str                       # "fusion" or "sharing" ("alone" for --method grpo)
    agent: int                       # agent index i
    question: int                    # position b of the question in the step's batch
    record: dict
    prompt_ids: list[list[int]]      # [G] prompt token ids (the G prompts are equal within a group)
    completion_ids: list[list[int]]  # [G] sampled token ids
    texts: list[str]                 # [G] decoded answers


def grade_groups(groups: list[Group]) -> torch.Tensor:
    """Correctness [num_groups, G] of every answer by the evaluator's grader (1.0 / 0.0); each agent's answers are
    graded by the process that holds the agent (all of them in one process; ranks.py with torchrun)."""
    graded = ranks.each_agent(max(g.agent for g in groups) + 1, lambda i: [
        [evaluate.reward(t, g.record) for t in g.texts] for g in groups if g.agent == i])   # [M][its groups][G]
    by_agent = [iter(rows) for rows in graded]
    return torch.tensor([next(by_agent[g.agent]) for g in groups])                        # in the groups' order


def group_rewards(groups: list[Group], format_reward: float, correct: torch.Tensor | None = None,
                  reward: str = "accuracy") -> torch.Tensor:
    """Rewards [num_groups, G] of every answer: `answer_reward` of each (the one place a classroom exercise swaps
    the reward). `correct` [num_groups, G], the grader's verdicts when already known, is reused: each answer is
    graded once (an MBPP answer costs a sandbox process)."""
    if correct is None:
        return torch.tensor([[answer_reward(t, g.record, format_reward, reward) for t in g.texts] for g in groups])
    score = correct if reward == "accuracy" else torch.tensor(
        [[digit_credit(t, g.record, c) for t, c in zip(g.texts, row.tolist())] for g, row in zip(groups, correct)])
    form = torch.tensor([[float(well_formed(t, g.record)) for t in g.texts] for g in groups])
    return score + format_reward * form


# ----------------------------------------------------------------------------------------------------------
# The data stream: step s takes questions [s*B, (s+1)*B) of a seeded order (reshuffled each epoch)
# ----------------------------------------------------------------------------------------------------------

def step_questions(num_questions: int, step: int, B: int, seed: int) -> list[int]:
    """Indices of the B questions of step `step` (0-based); a pure function of (step, seed): resumable.

    >>> step_questions(5, 0, 2, 0) != step_questions(5, 1, 2, 0), len(step_questions(5, 2, 2, 0))
    (True, 2)
    """
    out = []
    for position in range(step * B, (step + 1) * B):
        epoch, i = divmod(position, num_questions)
        order = np.random.default_rng([seed, epoch]).permutation(num_questions)
        out.append(int(order[i]))
    return out


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`'s random choices; idea3.stage_seed derives one per (stage, agent) from it,
    step_seed * 1000 + 100 * stage + agent, so no two (step, stage, agent) draws share a seed (agents < 100).

    >>> [idea3.stage_seed(step_seed(0, s), "sharing", i) for s in (0, 1) for i in (0, 1)]
    [0, 1, 1000, 1001]
    """
    return (seed * 1_000_003 + step) % (2 ** 31)


# ----------------------------------------------------------------------------------------------------------
# One training step: the paper's algorithm, section by section
# ----------------------------------------------------------------------------------------------------------

def train_step(cfg: Config, agents: list[Agent], records: list[dict], difficulty: np.ndarray,
               abilities: list[float], step: int) -> tuple[dict, list]:
    """Returns (metrics of this step, its transcripts with every trained answer's grade: graded_transcripts)."""
    t0 = time.time()
    M = len(agents)
    seed = step_seed(cfg.seed, step)
    batch = step_questions(len(records), step, cfg.questions_per_step, cfg.seed)
    questions = [records[q] for q in batch]                                                  # B records

    # 1) IRT: choose the mode of each question (Dynamic Interaction; irt.py).
    modes = irt.assign_modes(difficulty[batch], abilities, cfg.interaction, cfg.cooperation_ratio,
                             rng=seed, threshold=cfg.irt_threshold, scale=cfg.irt_scale)   # [B]

    # 2) Idea3 (ilr) or each agent alone (grpo): G answers per agent per question, with their token ids.
    t_gen = time.time()
    groups, transcripts, stage_stats = generate_groups(cfg, agents, questions, modes, seed)
    gen_seconds = time.time() - t_gen

    # 3) Grade: rewards [num_groups, G].
    correct = grade_groups(groups)                                                       # [num_groups, G]
    rewards = group_rewards(groups, cfg.format_reward, correct, cfg.reward)              # [num_groups, G]

    # 4) Perception Calibration, Eq. 5: the agents' groups on the same question and stage see each other.
    calibrated = rewards.clone()
    if cfg.method == "ilr" and cfg.calibration:
        for rows in peer_sets(groups):                                                   # rows: M group indices
            calibrated[rows] = grpo.perception_calibration(rewards[rows])                # [M, G] -> [M, G]

    # 5) GRPO: advantages within each group, then one update per agent on all its groups.
    advantages = grpo.group_advantages(calibrated, scale=cfg.scale_rewards)              # [num_groups, G]
    t_train = time.time()

    def update(i: int) -> dict:  # agent i's update, run by the process that holds agent i (ranks.py)
        agent, rows = agents[i], [g for g, group in enumerate(groups) if group.agent == i]
        prompt_ids = [p for g in rows for p in groups[g].prompt_ids]                     # [len(rows)*G]
        completion_ids = [c for g in rows for c in groups[g].completion_ids]
        batch_i = grpo.pack_batch(prompt_ids, completion_ids, agent.tokenizer.pad_token_id)
        torch.manual_seed(idea3.stage_seed(seed, "update", i))  # dropout (if any) draws alike in any process
        agent.model.train()                                  # train() only inside the update (dropout, if any)
        stats = grpo.grpo_step(
            agent.model, agent.optimizer, batch_i, advantages[rows].flatten(), agent.ref_model, beta=cfg.beta,
            epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
            micro_batch_size=cfg.micro_batch_size, max_grad_norm=cfg.max_grad_norm or None,
            temperature=cfg.temperature, use_bias_correction_kl=cfg.use_bias_correction_kl,
            skip_zero_advantage_kl_approx=cfg.skip_zero_advantage_kl_approx, shared_prefix=cfg.shared_prefix,
            scaler=agent.scaler)
        agent.model.eval()                                   # back to eval(): the next generation needs its cache
        return stats

    updates = ranks.each_agent(M, update)                    # [M] stats, every agent's on every rank
    train_seconds = time.time() - t_train

    # 6) Log: TRL's names, ILR's under ilr/; the transcripts with each trained answer's grade, rewards, advantage.
    transcripts = graded_transcripts(groups, transcripts, correct, rewards, calibrated, advantages, model_names(cfg))
    tokens = sum(len(c) for group in groups for c in group.completion_ids)                # trained tokens
    generated = sum(v for k, v in stage_stats.items() if k.endswith("_tokens")) or tokens  # all Idea3 stages
    metrics = {"step": step + 1, **grpo.reward_stats(rewards),                 # reward, reward_std, frac_..._zero_std
               "ilr/calibrated_reward": calibrated.mean().item(), "accuracy": correct.mean().item(),
               "ilr/cooperation_share": modes.count("cooperation") / len(modes) if cfg.method == "ilr" else None,
               "ilr/calibration_clip_share": grpo.calibration_clip_share(torch.stack(  # Eq. 5's clip, on or off
                   [rewards[rows] for rows in peer_sets(groups)])) if cfg.method == "ilr" else None,
               "kl": float(np.mean([u["kl"] for u in updates])),
               "clip_ratio": float(np.mean([u["clip_ratio"] for u in updates])),
               "frac_skipped": float(np.mean([u["frac_skipped"] for u in updates])),
               "loss": float(np.mean([u["loss"] for u in updates])),
               "grad_norm": float(np.mean(norms)) if (norms := [u["grad_norm"] for u in updates
                                                                 if u["grad_norm"] is not None]) else None,
               "skipped_updates": sum(u["skipped_updates"] for u in updates),  # fp16 scaler skips (grpo_step)
               "completion_tokens": tokens, "tokens_per_second": generated / max(gen_seconds, 1e-9),
               "generation_seconds": gen_seconds, "train_seconds": train_seconds,
               "step_seconds": time.time() - t0, **stage_stats}
    if cfg.method == "ilr":  # per known level (synthetic, ladder, MATH); None for a level absent from this batch
        all_levels = {r["meta"].get("level") for r in records}
        for level, share in irt.cooperation_share_by_level(modes, [r["meta"].get("level") for r in questions],
                                                           all_levels).items():
            metrics[f"ilr/cooperation_share/level{level}"] = share
    for i in range(M):
        rows = [g for g, group in enumerate(groups) if group.agent == i]
        metrics[f"agent{i}/reward"] = rewards[rows].mean().item()
        metrics[f"agent{i}/calibrated_reward"] = calibrated[rows].mean().item()
        metrics[f"agent{i}/accuracy"] = correct[rows].mean().item()
    return metrics, transcripts


def generate_groups(cfg: Config, agents: list[Agent], questions: list[dict], modes: list[str], seed: int):
    """G answers per agent per question, as GRPO groups; plus the Idea3 transcripts and per-stage token counts
    and seconds (ilr only)."""
    G = cfg.num_generations
    if cfg.method == "grpo":  # the baseline: each agent alone, the test-time prompt, no interaction
        groups = []
        prompts = [evaluate.test_prompt(r) for r in questions]
        outs = ranks.each_agent(len(agents), lambda i: llm.generate(     # each agent where it is held (ranks.py)
            agents[i].model, agents[i].tokenizer, prompts, n=G, temperature=cfg.temperature,
            max_new_tokens=cfg.max_completion_length, batch_size=cfg.batch_size,
            seed=idea3.stage_seed(seed, "sharing", i)))                     # as ILR's Sharing: unique per (s, i)
        for i, out in enumerate(outs):
            groups += [Group("alone", i, b, rec, [out.prompt_ids[b]] * G, out.completion_ids[b], out.texts[b])
                       for b, rec in enumerate(questions)]
        return groups, [], {}
    result = idea3.run_idea3([(a.model, a.tokenizer) for a in agents], questions, modes,
                             num_generations=G, temperature=cfg.temperature,
                             max_new_tokens=cfg.max_completion_length, peer_token_budget=cfg.peer_token_budget,
                             train_stages=tuple(cfg.train_stages.split(",")), batch_size=cfg.batch_size,
                             seed=seed)
    groups = []
    for stage in cfg.train_stages.split(","):
        for i in range(len(agents)):
            for b, rec in enumerate(questions):
                samples = result.samples[stage][i][b]                  # G samples: (prompt_ids, completion_ids, text)
                groups.append(Group(stage, i, b, rec, [s[0] for s in samples], [s[1] for s in samples],
                                    [s[2] for s in samples]))
    return groups, result.transcripts, result.stats


def peer_sets(groups: list[Group]) -> list[list[int]]:
    """Indices of the groups that calibrate each other (Eq. 5): the M agents' groups of one question and stage.

    >>> g = lambda agent, b: Group("fusion", agent, b, {}, [], [], [])
    >>> peer_sets([g(0, 0), g(0, 1), g(1, 0), g(1, 1)])
    [[0, 2], [1, 3]]
    """
    sets: dict = {}
    for index, group in enumerate(groups):
        sets.setdefault((group.stage, group.question), []).append(index)
    return list(sets.values())


# ----------------------------------------------------------------------------------------------------------
# Run directory: config, metrics.jsonl, transcripts, checkpoints (resumable), results
# ----------------------------------------------------------------------------------------------------------

class RunDirError(RuntimeError):
    """A fault of the run directory's disk or file system (full, read-only, a file where a folder should be);
    the message is one line naming the path and what to do. Nothing half-written is left, the last checkpoint
    is intact."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C outside the training loop (loading, base evaluation, the final save): run_training ends with one
    line. (Inside the loop Ctrl-C only sets a flag: the step finishes, a checkpoint is saved, the run stops.)"""


def raise_interrupted(signum, frame):
    raise Interrupted


def write_errors() -> tuple:
    """What a full disk (or another write fault) raises while saving: OSError, torch.save's RuntimeError and
    safetensors' SafetensorError (neither of the last two carries an errno)."""
    import safetensors
    return OSError, RuntimeError, safetensors.SafetensorError


def write_failed(e: Exception, folder: Path, run: Path, what: str) -> RunDirError:
    """One line for a save into `folder` that failed: the reason, the free space (the usual cause), what to do."""
    reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:100]
    return RunDirError(f"{folder}: could not write {what} ({reason}; {shutil.disk_usage(run).free // 2**20} MB "
                       f"free on that disk); the last checkpoint is intact: free space, then continue with "
                       f"python ilr.py --resume {run}")


def check_output_dir(run: Path) -> None:
    """One line, before anything is written, if a file stands where the run directory or a folder above it
    should be (mkdir would raise FileExistsError or NotADirectoryError)."""
    for path in (run, *run.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"--output_dir {run}: {path} is a file, not a directory; choose another "
                                  f"--output_dir")
            return


def disk_fault(e: OSError, run: Path) -> RunDirError:
    """One line for an OSError while the run writes its directory: the path, the reason, what to do."""
    path = e.filename or run
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = f"free space, then continue with python ilr.py --resume {run} (the last checkpoint is intact)"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        todo = "choose a writable --output_dir (or make this one writable)"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        todo = "a file stands where a folder should be, or the reverse: choose another --output_dir"
    else:
        todo = f"fix it, then continue with python ilr.py --resume {run}"
    return RunDirError(f"{path}: {e.strerror or e}; {todo}")


@contextlib.contextmanager
def written_aside(tmp: Path, run: Path, what: str):
    """The body writes into the folder `tmp`; if it fails (disk full, Ctrl-C, ...), `tmp` is removed, and a write
    error becomes one line naming the path (write_failed). The caller renames `tmp` in only after a clean exit."""
    try:
        yield
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, write_errors()):
            raise write_failed(e, tmp, run, what) from None
        raise


def save_checkpoint(run: Path, agents: list[Agent], step: int, settings: dict | None = None) -> None:
    """Weights, optimizer states and RNG states after `step` steps; written aside, then swapped in by renames.
    `settings` (training_settings) go with them, so that --resume can refuse a config.json edited since.

    state.pt is written after the weights, and itself through a rename, so a folder holding it is complete; then
    checksums.json (llm.write_checksums: the sha256 of every file, checked on --resume). A crash leaves a complete
    `checkpoint`, or (between the two renames) a complete `checkpoint.tmp` and `checkpoint.old`: `find_checkpoint`
    takes the newest complete one. A write that fails (disk full) or Ctrl-C removes `checkpoint.tmp` and leaves the
    previous checkpoint as it was."""
    tmp, final, old = run / "checkpoint.tmp", run / "checkpoint", run / "checkpoint.old"
    what = f"the checkpoint of step {step}"

    def begin():
        shutil.rmtree(tmp, ignore_errors=True)
        with written_aside(tmp, run, what):
            tmp.mkdir(parents=True)

    def write_agents():  # each process writes the agents it holds (torchrun: rank i writes agent{i}.pt)
        with written_aside(tmp, run, what):
            for i, a in enumerate(agents):
                if ranks.owns(i):
                    torch.save({"model": a.model.state_dict(), "optimizer": a.optimizer.state_dict(),  # fp16: the
                                "scaler": a.scaler.state_dict() if a.scaler else None}, tmp / f"agent{i}.pt")  # scale

    def finish():
        with written_aside(tmp, run, what):
            if settings is not None:
                (tmp / "settings.json").write_text(json.dumps(settings, indent=1))
            torch.save({"step": step, "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                       tmp / "state.pt.part")
            os.replace(tmp / "state.pt.part", tmp / "state.pt")
            llm.write_checksums(tmp)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    ranks.on_main(begin)               # one process: three calls in a row; torchrun: rank 0 begins and finishes,
    ranks.together(write_agents)       # every rank writes its agent in between (ranks.py, choice 3)
    ranks.on_main(finish)


def find_checkpoint(run: Path) -> Path | None:
    """RUN/checkpoint after repairing what a crash inside `save_checkpoint` left; None if no complete one.

    Newest first: `checkpoint` (the swap finished), `checkpoint.tmp` (written, not yet renamed), then
    `checkpoint.old` (the previous one, moved aside). Incomplete folders (no state.pt) are ignored."""
    final, tmp, old = run / "checkpoint", run / "checkpoint.tmp", run / "checkpoint.old"
    for folder in (final, tmp, old):
        if (folder / "state.pt").is_file():
            if folder != final:
                shutil.rmtree(final, ignore_errors=True)
                folder.rename(final)
                print(f"[ilr] recovered the checkpoint from {folder.name} (a crash interrupted the last save)")
            for leftover in (tmp, old):
                shutil.rmtree(leftover, ignore_errors=True)
            return final
    return None


def checkpoint_step(checkpoint: Path) -> int:
    """Steps done by the checkpoint, read without loading a model."""
    return torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=False)["step"]


def load_checkpoint(run: Path, agents: list[Agent]) -> int:
    """Restore agents and RNGs; returns the number of steps already done.

    map_location="cpu": a checkpoint written on a GPU loads on a machine without one; load_state_dict then copies
    each tensor to its parameter's device and dtype (the optimizer's states too), wherever the agents live."""
    ck = run / "checkpoint"
    for i, a in enumerate(agents):
        if not ranks.owns(i):                              # torchrun: rank i loads agent i
            continue
        state = torch.load(ck / f"agent{i}.pt", map_location="cpu", weights_only=False)
        a.model.load_state_dict(state["model"])
        a.optimizer.load_state_dict(state["optimizer"])
        if a.scaler is not None and state.get("scaler"):   # an fp16 run resumes with its loss scale, not anew
            a.scaler.load_state_dict(state["scaler"])
    state = torch.load(ck / "state.pt", map_location="cpu", weights_only=False)
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])        # same GPUs: sampling continues exactly
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    return state["step"]


def training_settings(cfg: Config) -> dict:
    """The settings that shape training: all but RESUMABLE, and output_dir (a run directory may be moved)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE | {"output_dir"}}


def check_checkpoint(run: Path, checkpoint: Path, cfg: Config) -> None:
    """Before --resume trusts what is on disk: every file of the checkpoint and of final/agent{i}/ matches its
    checksum (llm.verify_checksums: one line naming the file), and the checkpoint was trained with the settings
    config.json holds now (the command line is checked in parse_args; this catches a hand-edited config.json)."""
    if not llm.verify_checksums(checkpoint):
        print(f"[ilr] {checkpoint} has no {llm.CHECKSUMS} (written before checksums existed): not verified")
    for folder in sorted((run / "final").glob("agent*")):
        try:
            llm.verify_checksums(folder)
        except llm.ModelError as e:
            raise llm.ModelError(f"{e}, or delete {run}/final: the run writes it again from the checkpoint") from None
    path = checkpoint / "settings.json"
    if not path.is_file():                      # written before settings were kept with the checkpoint
        return
    trained, now, defaults = json.loads(path.read_text()), training_settings(cfg), dataclasses.asdict(Config())
    if (was := trained.pop("world_size", 1)) != ranks.world_size():   # one agent per rank (ranks.py): keep the split
        how = f"torchrun --nproc_per_node {was} ilr.py --resume {run}" if was > 1 else f"python ilr.py --resume {run}"
        raise ConfigError(f"{checkpoint} was written by {was} process(es) and this run has {ranks.world_size()}: "
                          f"resume it as it ran, {how}")
    now = json.loads(json.dumps(now))           # compared as they read back from JSON
    for k, v in now.items():
        if trained.get(k, defaults[k]) != v:    # a setting added to Config since: its default is what ran
            raise ConfigError(f"{run}/config.json: {k} is {v!r} but the checkpoint was trained with "
                              f"{trained.get(k, defaults[k])!r} (config.json edited since?); set it back, or start "
                              f"a new run")


def write_whole(path: Path, text: str) -> None:
    """Write `path` aside and rename it in: a full disk or a crash leaves the old file, never half of the new."""
    part = path.with_name(path.name + ".part")
    try:
        part.write_text(text)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)


def save_final(run: Path, agents: list[Agent]) -> None:
    """Each trained model in Hugging Face format (`python evaluate.py --model RUN_DIR/final/agent0`), with the
    checksums.json that llm.load_model checks; each folder is written aside and renamed in, so an interrupted
    save leaves the previous folder or none, never half of one. Torchrun: rank i writes agent i (ranks.py)."""
    ranks.together(lambda: [save_final_agent(run, i, a) for i, a in enumerate(agents) if ranks.owns(i)])


def save_final_agent(run: Path, i: int, a: Agent) -> None:
    target = run / "final" / f"agent{i}"
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with written_aside(tmp, run, f"trained agent {i}"):
        with ranks.own_save(a.model):                 # torchrun: transformers would save on rank 0 only
            a.model.save_pretrained(tmp)
        a.tokenizer.save_pretrained(tmp)
        llm.write_checksums(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def cut_metrics(path: Path, steps: int) -> None:
    """Keep the metrics rows of the first `steps` steps (the checkpoint's). Rows are written before the
    checkpoint, so after a crash the file may run ahead of it; the resumed steps write those rows again."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:                          # a torn last line
            break
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= steps:
            keep.append(line + "\n")
    write_whole(path, "".join(keep))


def lock_run(run: Path) -> Path:
    """Take RUN/lock (our pid) so that two processes never write one run directory; one line if it is held.
    A lock left by a process that no longer exists (killed, machine rebooted) is taken over.

    The lock appears with our pid already in it: the pid is written to a file aside, which is then hard-linked
    as `lock` (os.link fails if `lock` exists, as O_EXCL does). Created empty and written after, an empty lock
    would count as stale, and a second process arriving in between would take over a live run."""
    lock = run / "lock"
    try:
        fd, aside = tempfile.mkstemp(dir=run, prefix=".lock-")
    except OSError as e:                        # read-only, full: name the lock, not the temporary name
        raise OSError(e.errno, e.strerror, str(lock)) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        for _ in range(2):
            try:
                link_lock(aside, lock)
                return lock
            except FileExistsError:
                text = lock.read_text().strip() if lock.is_file() else ""
                pid = int(text) if text.isdigit() else None
                if pid is not None and pid_alive(pid):
                    raise ConfigError(f"{run} is in use by process {pid} ({lock}); wait for it to finish or stop "
                                      f"it (delete {lock} if that process is no ilr.py run)") from None
                print(f"[ilr] taking over {lock} left by process {pid or '?'}, which no longer runs", flush=True)
                lock.unlink(missing_ok=True)
    finally:
        os.unlink(aside)
    raise ConfigError(f"{run}: could not take {lock}; another process is starting in this directory")


def link_lock(aside: str, lock: Path) -> None:
    """Make `aside` (our pid) appear as `lock` in one step; FileExistsError if `lock` exists already."""
    try:
        os.link(aside, lock)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (some network / FUSE mounts): O_EXCL, then the write,
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # with the short window that os.link closes
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)                             # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:                         # exists, belongs to another user
        return True
    return True


def unlock_run(lock: Path) -> None:
    """Release RUN/lock if this process holds it. Under torchrun every rank gets rank 0's lock path and rank 0
    may delete the lock at any moment: a lock gone between looking and reading is not ours, not an error."""
    try:
        ours = lock.read_text().strip() == str(os.getpid())
    except FileNotFoundError:
        return
    if ours:
        lock.unlink(missing_ok=True)


def extracted_answer(text: str, record: dict) -> str:
    """What the grader reads in an answer, for the transcripts: the math answer it extracts, or the code's size.

    >>> math = {"kind": "math", "meta": {}}
    >>> extracted_answer("so \\\\boxed{4}", math), extracted_answer("hm", math)
    ("'4'", 'none')
    """
    meta = record.get("meta", {})
    if record["kind"] == "code":
        code = evaluate.extract_code(text, meta.get("entry_point"))
        return "none" if code is None else f"code ({len(code.splitlines())} lines)"
    answer, _ = evaluate.extract_answer(text, meta.get("benchmark"))   # as evaluate.grade_math reads it
    return "none" if answer is None else repr(idea3.shorten(answer, 40))


def grade_line(text: str, record: dict, correct: float, reward: float, calibrated: float, advantage: float) -> str:
    """One trained answer's grade, as its transcript label shows it: sections 3-5 of `train_step` for this answer.

    >>> grade_line("so \\\\boxed{4}", {"kind": "math", "meta": {}}, 1.0, 1.1, 0.85, 1.2247)
    "extracted '4' | correct | reward 1.10 | calibrated 0.85 | advantage +1.22"
    """
    return (f"extracted {extracted_answer(text, record)} | {'correct' if correct else 'wrong'} | reward {reward:.2f} "
            f"| calibrated {calibrated:.2f} | advantage {advantage:+.2f}")


def graded_transcripts(groups: list[Group], transcripts: list[dict], correct: torch.Tensor, rewards: torch.Tensor,
                       calibrated: torch.Tensor, advantages: torch.Tensor, names: list[str]) -> list[dict]:
    """The step's transcripts with every trained answer and its grade (idea3.format_transcript prints them).

    One transcript per question: Idea3's (ilr), or a new one holding the answers alone (grpo, stage "answer").
    Each trained stage holds all G answers of every agent, [M][G], and "grades" one `grade_line` per answer
    ([M][G] per stage). For a trained Sharing stage, answer 1 of each agent is the one its peers read.
    correct, rewards, calibrated, advantages: [num_groups, G], the tensors of train_step's sections 3-5.
    """
    M = len(names)
    if transcripts:     # copy the lists that are filled in below: Idea3's result stays as it was
        out = [{k: list(v) if isinstance(v, list) else v for k, v in t.items()} for t in transcripts]
    else:               # --method grpo: one transcript per question, in batch order
        records = {g.question: g.record for g in groups}
        out = [{"id": records[b]["id"], "question": records[b]["question"], "mode": "alone (--method grpo)",
                "agents": list(names)} for b in sorted(records)]
    for row, g in enumerate(groups):
        key = "answer" if g.stage == "alone" else g.stage                  # idea3.TRANSCRIPT_STAGES' names
        t = out[g.question]
        t.setdefault(key, [None] * M)[g.agent] = list(g.texts)           # [G] texts
        t.setdefault("grades", {}).setdefault(key, [None] * M)[g.agent] = [
            grade_line(text, g.record, correct[row, k].item(), rewards[row, k].item(), calibrated[row, k].item(),
                       advantages[row, k].item()) for k, text in enumerate(g.texts)]
    return out


def format_step_transcripts(step: int, transcripts: list[dict]) -> str:
    """RUN/transcripts/stepNNNNN.txt: a legend, then each question's transcript with its grades."""
    legend = (f"Step {step}: the row with \"step\": {step} of metrics.jsonl; [agent k] below is agent{{k-1}} there.\n"
              f"Each trained answer's label ends with its grade (train_step, sections 3-5):\n"
              f"  extracted: the answer the grader read | correct or wrong | reward: 1 if correct, plus format_reward "
              f"if well formed\n  | calibrated: the reward after Eq. 5 (the reward itself for --method grpo or "
              f"--no-calibration)\n  | advantage: GRPO's, from the calibrated rewards of its group (its G answers).\n"
              f"The mean of agent k's rewards is agent{{k-1}}/reward in metrics.jsonl, of its calibrated rewards "
              f"agent{{k-1}}/calibrated_reward.")
    return legend + "\n\n" + "\n\n".join(idea3.format_transcript(t) for t in transcripts) + "\n"


def format_line(m: dict, M: int) -> str:
    """The one progress line per step, same keys as metrics.jsonl."""
    agents = " ".join(f"a{i} r={m[f'agent{i}/reward']:.2f}/{m[f'agent{i}/calibrated_reward']:.2f} "
                      f"acc={m[f'agent{i}/accuracy']:.2f}" for i in range(M))
    coop = "-" if m["ilr/cooperation_share"] is None else f"{m['ilr/cooperation_share']:.2f}"  # None: grpo
    held_out = " ".join(f"{k[5:]}={v:.1f}%" for k, v in m.items() if k.startswith("eval/"))  # --eval_steps
    return (f"step {m['step']:>4} | {agents} | coop={coop} "
            f"zero_std={m['frac_reward_zero_std']:.2f} kl={m['kl']:.4f} clip={m['clip_ratio']:.3f} "
            f"tok/s={m['tokens_per_second']:.0f} {m['step_seconds']:.0f}s" + (f" | held-out {held_out}" if held_out
                                                                               else ""))


# ----------------------------------------------------------------------------------------------------------
# Before training (IRT inputs) and after training (each agent alone)
# ----------------------------------------------------------------------------------------------------------

def load_training_data(cfg: Config) -> tuple[list[dict], list[dict]]:
    generated = {"synthetic": data.synthetic_problems,                     # offline, level known; the ladder's
                 "ladder": functools.partial(data.ladder_problems, split="train")}  # test questions never train
    levels = tuple(int(x) for x in cfg.train_levels.split(","))
    if cfg.train_data in generated:
        train = generated[cfg.train_data](cfg.num_train or 500, seed=cfg.seed + 1_000_003, levels=levels)
    else:
        train = data.load_benchmark(cfg.train_data, cfg.data_dir, split="train", limit=cfg.num_train or None)
    if cfg.val_data in generated:  # held out: a third seed (evaluation uses the test seed, cfg.seed + 0)
        val = generated[cfg.val_data](cfg.num_val, seed=cfg.seed + 2_000_003, levels=levels)
    else:  # OURS: the paper's 1,000 held-out MATH questions; here the first num_val of the test split that
        # MATH-500 does not contain (the PRM800K split), so evaluation on MATH-500 stays clean.
        val = data.load_benchmark(cfg.val_data, cfg.data_dir, split="test")
        if cfg.val_data == "math":  # by id (the local files share MATH-500's unique_id) or by problem text,
            # whitespace-normalised (the Hub's MATH-lighteval rows carry no unique_id: their ids are row numbers)
            math500 = data.load_benchmark("math500", cfg.data_dir)
            held_ids, held_texts = {r["id"] for r in math500}, {" ".join(r["question"].split()) for r in math500}
            val = [r for r in val if r["id"] not in held_ids and " ".join(r["question"].split()) not in held_texts]
        val = val[:cfg.num_val]
    return train, val


def irt_needed(cfg: Config) -> bool:
    """Only IRT-chosen modes (--method ilr --interaction dynamic) depend on γ and D_q."""
    return cfg.method == "ilr" and cfg.interaction == "dynamic"


def digest(value) -> str:
    """A short hash of JSON-able data (the records a cached result was computed from).

    >>> digest([{"q": 1}]) == digest([{"q": 1}]), digest([{"q": 1}]) == digest([{"q": 2}])
    (True, False)
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(path: Path, inputs: dict) -> dict | None:
    """The JSON object cached at `path` if it records exactly `inputs` (what it was computed from), else None:
    a result computed for other settings, models or data is never reused."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    inputs = json.loads(json.dumps(inputs, default=str))          # compare as it reads back (tuples -> lists)
    return saved if isinstance(saved, dict) and saved.get("inputs") == inputs else None


def irt_cache_inputs(cfg: Config, train: list[dict], val: list[dict]) -> dict:
    """Everything γ and D_q depend on (batch_size only batches the same work)."""
    return {"measured": irt_needed(cfg), "difficulty": cfg.difficulty, "models": model_names(cfg), "seed": cfg.seed,
            "eval_max_new_tokens": cfg.eval_max_new_tokens, "rank_group_size": cfg.rank_group_size,
            "rank_splits": cfg.rank_splits, "train": digest([r["question"] for r in train]),
            "val": digest([[r["question"], r["answer"]] for r in val])}


def irt_inputs(cfg: Config, agents: list[Agent], train: list[dict], val: list[dict], run: Path):
    """γ_i per agent and D_q per training question, cached in RUN/irt.json with the inputs they came from."""
    path, inputs = run / "irt.json", irt_cache_inputs(cfg, train, val)
    if (saved := cached(path, inputs)) is not None:
        return np.array(saved["difficulty"]), saved["abilities"]
    if not irt_needed(cfg):  # modes do not depend on them: skip the cost
        difficulty, abilities, stats = np.full(len(train), 0.5), [0.5] * len(agents), {"skipped": True}
    else:
        abilities = ranks.each_agent(len(agents), lambda i: irt.estimate_ability(   # where agent i is held
            agents[i].model, agents[i].tokenizer, val, batch_size=cfg.batch_size,
            max_new_tokens=cfg.eval_max_new_tokens, desc=f"γ: agent{i} answers {len(val)} validation questions"))
        if cfg.difficulty == "level":  # OURS: the known level as D_q (the control of self-ranking)
            difficulty = irt.level_difficulty([r["meta"].get("level") for r in train])
            stats = {"difficulty": "level"}
        else:
            difficulty, stats = irt.estimate_difficulty([(a.model, a.tokenizer) for a in agents],
                                                        [r["question"] for r in train],
                                                        group_size=cfg.rank_group_size,
                                                        num_splits=cfg.rank_splits, seed=cfg.seed,
                                                        batch_size=cfg.batch_size)
    ranks.on_main(lambda: path.write_text(json.dumps({"inputs": inputs, "abilities": abilities, "difficulty":
                                                      list(map(float, difficulty)), "stats": stats}, default=str)))
    return difficulty, abilities


def eval_cache_inputs(cfg: Config, tag: str, agent: int, records: list[dict]) -> dict:
    """What one evaluation file depends on: the model (base: its name and seed; trained: every setting that
    shapes training, which --resume cannot change, and the step), the answer length and the questions."""
    model = {"name": model_names(cfg)[agent], "seed": cfg.seed}
    if tag != "base":
        model |= {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE} | {"tag": tag}
    return {"model": model, "eval_max_new_tokens": cfg.eval_max_new_tokens,
            "records": digest([[r["id"], r["question"], r["answer"]] for r in records])}


def evaluate_alone(cfg: Config, agents: list[Agent], run: Path, tag: str, limit: int | None = None) -> dict:
    """Each agent ALONE on each evaluation benchmark (the paper's test protocol: pass@1, greedy), on its first
    `limit` questions (default --eval_limit; 0 = all). Before training (tag "base", or "curve-step0" of
    --eval_steps), agents loaded from the same model are identical: evaluated once.
    RUN/eval/<tag>-agent<i>-<benchmark>.jsonl is continued only if its .inputs.json matches (else redone)."""
    results = {}
    names = model_names(cfg)
    limit = cfg.eval_limit if limit is None else limit
    for name in cfg.eval_benchmarks.split(","):
        records = data.load_benchmark(name, cfg.data_dir, limit=limit or None)

        def alone(i: int) -> float | None:  # agent i alone, in the process that holds it (ranks.py)
            a, twin = agents[i], names.index(names[i])       # twin: the first agent loaded from the same model
            if tag in ("base", curve_tag(0)) and twin < i:
                return None                                  # the same untrained model: agent twin's score
            out = run / "eval" / f"{tag}-agent{i}-{name}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            stamp, inputs = out.with_suffix(".inputs.json"), eval_cache_inputs(cfg, tag, i, records)
            if cached(stamp, inputs) is None:                # computed from something else, or never: start over
                out.unlink(missing_ok=True)
                stamp.write_text(json.dumps({"inputs": inputs}, default=str))
            summary = evaluate.evaluate_model(a.model, a.tokenizer, records, max_new_tokens=cfg.eval_max_new_tokens,
                                              batch_size=cfg.batch_size, out_path=out, resume=True,
                                              progress=True, name=name)
            return summary["pass@1"]

        for i, score in enumerate(ranks.each_agent(len(agents), alone)):
            results[f"agent{i}/{name}"] = results[f"agent{names.index(names[i])}/{name}"] if score is None else score
    return results


def curve_tag(step: int) -> str:
    """The evaluation tag of --eval_steps' point after `step` steps (0: before training)."""
    return f"curve-step{step}"


def curve_point(cfg: Config, agents: list[Agent], run: Path, step: int) -> dict:
    """--eval_steps: each agent alone on the first --eval_curve_limit questions after `step` steps, as
    {"eval/<benchmark>/agent<i>": pass@1 (%)} (TRL's eval_ prefix, as a folder: trackers group it)."""
    scores = evaluate_alone(cfg, agents, run, curve_tag(step), limit=cfg.eval_curve_limit)
    return {f"eval/{key.split('/')[1]}/{key.split('/')[0]}": value for key, value in scores.items()}


def read_curve(run: Path) -> dict[int, dict]:
    """The held-out curve of a run (--eval_steps): {step: {"agent<i>/<benchmark>": pass@1 (%)}}, step 0 included,
    from its RUN/eval/curve-step<N>-agent<i>-<benchmark>.jsonl files (a file cut by a crash is completed by
    --resume)."""
    curve: dict[int, dict] = {}
    for path in sorted(Path(run, "eval").glob("curve-step*-agent*-*.jsonl")):
        step, agent, bench = re.fullmatch(r"curve-step(\d+)-(agent\d+)-(.+)\.jsonl", path.name).groups()
        results = evaluate.read_results(path)
        curve.setdefault(int(step), {})[f"{agent}/{bench}"] = evaluate.summarize(results, samples=1)["pass@1"]
    if 0 in curve:                                    # untrained twins were evaluated once (evaluate_alone)
        names = model_names(load_run_config(run))
        for i, name in enumerate(names):              # agent i reads its twin's (the first with its model)
            for key, value in list(curve[0].items()):
                agent, bench = key.split("/")
                if agent == f"agent{names.index(name)}":
                    curve[0].setdefault(f"agent{i}/{bench}", value)
    return {step: dict(sorted(points.items())) for step, points in sorted(curve.items())}


def base_cache_inputs(cfg: Config) -> dict:
    return {"models": model_names(cfg), "seed": cfg.seed, "eval_benchmarks": cfg.eval_benchmarks,
            "eval_limit": cfg.eval_limit, "eval_max_new_tokens": cfg.eval_max_new_tokens, "data_dir": cfg.data_dir}


def results_table(cfg: Config, base: dict, trained: dict, M: int) -> str:
    names = cfg.eval_benchmarks.split(",")
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, name in enumerate(model_names(cfg)[:M]):
        row = lambda label, scores: f"| {label} | " + " | ".join(f"{scores[f'agent{i}/{b}']:.1f}" for b in names) + " |"
        if base:
            lines.append(row(f"agent{i} base ({name})", base))
        lines.append(row(f"agent{i} {cfg.method}", trained))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# main: parse, check, load, (resume), train, evaluate
# ----------------------------------------------------------------------------------------------------------

# What `--resume RUN` may change: how long to train, what to evaluate and how, how often to log and save, and
# how generation is batched and where it runs. Everything else shapes the training itself, so a resumed run with
# another value would be neither the saved run nor a new one; it is refused before anything is written.
RESUMABLE = {"max_steps", "eval_benchmarks", "eval_limit", "eval_base", "eval_steps", "eval_curve_limit",
             "save_steps", "log_transcript_steps",
             "report_to", "batch_size", "device", "bf16", "fp16"}   # (the last three: where the run computes, not what)


def help_default(value, preset: str | None = None) -> str:
    """How `--help` shows a default: the value a run would use (and the preset it comes from); bools as on/off;
    None (the device decides, or the Hub) is left to the help text, which says what it means.

    >>> help_default(1e-6), help_default(2e-5, "demo"), help_default(True), help_default(None)
    (' (default: 1e-06)', ' (default: 2e-05, from --preset demo)', ' (default: on)', '')
    """
    if value is None:
        return ""
    shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
    source = f", from --preset {preset}" if preset else ""
    return f" (default: {shown}{source})".replace("%", "%%")          # argparse %-formats help strings


def help_epilog() -> str:
    """The end of `python ilr.py --help`: every preset with its line, and the plot subcommand."""
    def item(name: str, text: str) -> str:
        return textwrap.fill(text, width=100, initial_indent=f"  {name:11s} ", subsequent_indent=" " * 14)
    presets = "\n".join(item(name, PRESET_HELP[name]) for name in PRESETS)
    return (f"presets (--preset NAME --help shows that preset's values as the defaults):\n{presets}\n\n"
            f"subcommand:\n" + item("plot", "python ilr.py plot RUN_DIR [RUN_DIR ...]: redraw RUN_DIR/curves.png "
                                             "from its metrics.jsonl; several runs: one compare.png beside them "
                                             "(python ilr.py plot --help)"))


def saved_settings(run: Path, why: str = "") -> dict:
    """RUN/config.json, the settings a run was started with, checked: one line (prefixed by `why`, e.g.
    "--resume ") if it is missing, not a JSON object, or written by another version with other settings."""
    if not (run / "config.json").is_file():
        raise ConfigError(f"{why}{run}: no config.json there (not a run directory)")
    try:
        saved = json.loads((run / "config.json").read_text())
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"{why}{run}: config.json is not a JSON object of settings")
    unknown = set(saved) - {f.name for f in fields(Config)}
    if unknown:
        raise ConfigError(f"{why}{run}: config.json has settings this ilr.py does not know "
                          f"({', '.join(sorted(unknown))}); it was written by another version")
    return saved


def load_run_config(run: Path) -> Config:
    """The Config of a run directory (a finished or running one), as saved_settings checks it."""
    return Config(**saved_settings(Path(run)))


def parse_args(argv: list[str] | None) -> tuple[Config, Path | None]:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--preset NAME --help` shows the preset's values as the defaults: read --preset before building the help
    early = llm.ArgumentParser(prog="ilr.py", add_help=False)
    early.add_argument("--preset")
    preset_name = early.parse_known_args(argv)[0].preset
    preset = PRESETS.get(preset_name, {})
    parser = llm.ArgumentParser(
        prog="ilr.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=help_epilog(),
        description="ILR co-training (arXiv 2509.26306). Every setting is a field of ilr.Config;\na preset "
                    "replaces some of its defaults, and a flag overrides both.",
        usage="python %(prog)s [--preset NAME] [--SETTING VALUE ...] | --resume RUN_DIR\n"
              "       python %(prog)s plot RUN_DIR [RUN_DIR ...]")
    parser.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                        help=f"a named set of defaults: {', '.join(PRESETS)} (each explained below)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved config; "
                        "only " + ", ".join(f"--{k}" for k in sorted(RESUMABLE & {f.name for f in fields(Config)}))
                        + " may change")
    config_defaults = Config()
    for f in fields(Config):  # --num_generations and --num-generations both work
        names = list(dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"]))     # the README's first
        # default=None marks "not given" (a preset or --resume's saved config fills it); the help shows the value
        # the run would really use: the preset's if one is given, else Config's
        shown = f.metadata["help"] + (help_default(preset[f.name], preset_name) if f.name in preset
                                      else help_default(getattr(config_defaults, f.name)))
        if f.type in ("bool", bool):
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=shown)
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(*names, dest=f.name, type=kind, default=None, help=shown,
                                metavar={int: "INT", float: "FLOAT"}.get(kind, "TEXT"))
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(Config) if getattr(args, f.name) is not None}
    if not args.resume:
        return Config(**(PRESETS.get(args.preset, {}) | given)), None
    run = Path(args.resume)
    if args.preset and (run / "config.json").is_file():
        raise ConfigError(f"--preset with --resume: the run continues with its own saved config ({run}/config.json)")
    saved = saved_settings(run, "--resume ")
    if "output_dir" in given and Path(given.pop("output_dir")).resolve() != run.resolve():
        raise ConfigError(f"--output_dir with --resume {run}: the run continues in its own directory; leave "
                          f"--output_dir out")
    defaults = Config()
    changed = sorted(k for k, v in given.items() if v != saved.get(k, getattr(defaults, k)))
    refused = [k for k in changed if k not in RESUMABLE]
    if refused:
        k = refused[0]
        raise ConfigError(f"--resume {run}: --{k} cannot change mid-run (saved {saved.get(k, getattr(defaults, k))!r}, "
                          f"given {given[k]!r}); only --{', --'.join(sorted(RESUMABLE & set(saved)))} may; "
                          f"start a new run for the rest")
    return Config(**(saved | given | {"output_dir": str(run)})), run


def main(argv: list[str] | None = None) -> dict:
    """The command line; a bad setting, model or data file ends it with one line (exit 2), not a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plot"]:  # plot RUN (its curves.png) | plot RUN_A RUN_B ... (compare.png beside them)
        parser = llm.ArgumentParser(prog="ilr.py plot", description="Training curves of finished or running "
                                    "runs, from their metrics.jsonl.")
        parser.add_argument("runs", nargs="*", metavar="RUN_DIR", default=["runs/demo"],
                            help="one run: RUN_DIR/curves.png; several: compare.png in the first one's parent "
                                 "folder (default: runs/demo)")
        runs = [Path(a) for a in parser.parse_args(argv[1:]).runs]
        return plot_run(runs[0]) if len(runs) == 1 else compare_runs(runs)
    try:
        return run_training(argv)
    except (ConfigError, RunDirError, data.DataError, llm.ModelError) as e:
        where = f"[rank {ranks.rank()}] " if ranks.world_size() > 1 else ""   # torchrun: each rank says its own
        print(f"ilr.py: error: {where}{e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ranks.RankError as e:              # another rank failed or was lost: this one stops, in one line
        print(f"ilr.py: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        ranks.stop()


def run_training(argv: list[str]) -> dict:
    cfg, resume = parse_args(argv)
    check_config(cfg)
    if cfg.dry_run:                           # the memory plan (memory.py): no weights loaded, nothing written
        import memory
        return memory.dry_run(cfg, model_names(cfg))
    ranks.start(cfg.ddp_timeout)   # torchrun: one agent per rank (ranks.py); else nothing
    run = resume or Path(cfg.output_dir)
    check_output_dir(run)
    previous = signal.signal(signal.SIGINT, raise_interrupted)   # Ctrl-C outside the loop: one line, below
    try:
        run.mkdir(parents=True, exist_ok=True)
        lock = ranks.on_main(lambda: lock_run(run))   # from here on this process (rank 0) is the only writer of
        ranks.quiet(run / f"rank{ranks.rank()}.log")   # `run` but for its agents' files; ranks > 0 log there
        try:
            return train_and_evaluate(cfg, run, resume is not None)
        finally:
            unlock_run(lock)
    except OSError as e:                      # disk full, read-only, ...: one line naming the path
        raise disk_fault(e, run) from None
    except Interrupted:
        again = f"python ilr.py --resume {run}" if (run / "config.json").is_file() else "the same command"
        sys.exit(f"[ilr] stopped by Ctrl-C outside the training loop; nothing half-written is left and the last "
                 f"checkpoint is kept: continue with {again}")
    finally:
        signal.signal(signal.SIGINT, previous)


def train_and_evaluate(cfg: Config, run: Path, resuming: bool) -> dict:
    checkpoint = ranks.on_main(lambda: find_checkpoint(run))   # repairs what a crashed save left: one process
    finished = (run / "results.json").is_file()             # e.g. a run whose weights table1.py --prune deleted
    if not resuming and (checkpoint is not None or finished):
        raise ConfigError(f"{run} holds a run already; continue it with --resume {run} or choose another --output_dir")
    if resuming and checkpoint is None and finished:
        raise ConfigError(f"--resume {run}: the run finished (results.json) and its checkpoint is gone (deleted, "
                          f"e.g. by table1.py --prune): nothing to continue; choose another --output_dir")
    if checkpoint is not None:
        check_checkpoint(run, checkpoint, cfg)
    done = checkpoint_step(checkpoint) if checkpoint else 0
    if done > cfg.max_steps:
        raise ConfigError(f"--max_steps {cfg.max_steps} is below the {done} steps {run}/checkpoint holds already")
    if resuming and checkpoint is None:
        print(f"[ilr] {run} has no checkpoint (stopped before the first save): starting again at step 0", flush=True)
    train, val = load_training_data(cfg)
    if done and cached(run / "irt.json", irt_cache_inputs(cfg, train, val)) is None:
        raise ConfigError(f"{run}/irt.json does not match this run's models and data (changed since step 1?); "
                          f"γ and D_q cannot be measured again on trained agents: start a new run")
    # Nothing was written before this point: a refused setting leaves the run directory as it was.
    ranks.on_main(lambda: (cut_metrics(run / "metrics.jsonl", done),
                           write_whole(run / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1))))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    print(f"[ilr] run directory {run} | method={cfg.method} agents={model_names(cfg)} "
          f"interaction={cfg.interaction} calibration={cfg.calibration}"
          + (f" | resuming after step {done}" if done else ""), flush=True)
    if "tiny" in model_names(cfg):  # --preset tiny, or a tiny peer (EXERCISES.md, exercise 5)
        print("[ilr] 'tiny' is a random 2-layer model (llm.tiny_model) for checking the plumbing: rewards near 0 "
              "and transcripts of random tokens are expected", flush=True)

    if ranks.active():
        print(f"[ilr] {ranks.describe()}, agent i in rank i", flush=True)
    agents = ranks.together(lambda: make_agents(cfg))      # a rank whose model fails to load stops them all
    if checkpoint is not None:
        ranks.together(lambda: load_checkpoint(run, agents))
    base = (cached(run / "base.json", base_cache_inputs(cfg)) or {}).get("results", {})
    if cfg.eval_base and done == 0 and not base:  # before any update: the base row
        base = evaluate_alone(cfg, agents, run, "base")
        ranks.on_main(lambda: (run / "base.json").write_text(json.dumps({"inputs": base_cache_inputs(cfg),
                                                                         "results": base})))
    elif cfg.eval_base and not base:
        print("[ilr] no base row: the untrained models were evaluated on other benchmarks or settings", flush=True)
    difficulty, abilities = irt_inputs(cfg, agents, train, val, run)
    if not irt_needed(cfg):
        print(f"[ilr] IRT not measured: the modes of --method {cfg.method} --interaction {cfg.interaction} do not "
              f"depend on γ and D_q | {len(train)} training questions", flush=True)
    else:
        print(f"[ilr] abilities γ = {[round(a, 3) for a in abilities]} | mean difficulty D = "
              f"{float(np.mean(difficulty)):.3f} | {len(train)} training questions", flush=True)

    from tqdm.auto import tqdm
    interrupted = False
    def on_sigint(signum, frame):  # Ctrl-C: finish the current step, save, stop
        nonlocal interrupted
        interrupted = True
        print("\n[ilr] Ctrl-C: saving a checkpoint after this step", flush=True)
    tracked = trackers.Trackers(cfg.report_to if ranks.is_main() else "none", run, dataclasses.asdict(cfg), done)
    previous = signal.signal(signal.SIGINT, on_sigint)
    if cfg.eval_steps and done == 0:                  # the held-out curve starts at the untrained models
        curve_point(cfg, agents, run, 0)
    try:
        for step in tqdm(range(done, cfg.max_steps), desc="ILR" if cfg.method == "ilr" else "GRPO",
                         initial=done, total=cfg.max_steps, unit="step"):
            metrics, transcripts = train_step(cfg, agents, train, difficulty, abilities, step)
            if cfg.eval_steps and (step + 1) % cfg.eval_steps == 0:   # the held-out curve (no effect on training)
                metrics |= curve_point(cfg, agents, run, step + 1)
            if ranks.is_main():                               # torchrun: every rank has the same metrics
                append_jsonl(run / "metrics.jsonl", metrics)
                tracked.log(metrics)                          # the same row to TensorBoard / W&B / trackio
                tqdm.write(format_line(metrics, len(agents)))
                if transcripts and (step + 1) % cfg.log_transcript_steps == 0:
                    (run / "transcripts").mkdir(exist_ok=True)
                    (run / "transcripts" / f"step{step + 1:05d}.txt").write_text(
                        format_step_transcripts(step + 1, transcripts))
            interrupted = ranks.any_rank(interrupted)         # torchrun: all ranks stop after the same step
            if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.max_steps or interrupted:
                save_checkpoint(run, agents, step + 1, training_settings(cfg) | {"world_size": ranks.world_size()})
            if interrupted:
                sys.exit(f"[ilr] stopped after step {step + 1}; continue with: python ilr.py --resume {run}")
    finally:
        signal.signal(signal.SIGINT, previous)
        tracked.close()                                       # flushes the event files

    save_final(run, agents)
    trained = evaluate_alone(cfg, agents, run, f"step{cfg.max_steps}")
    table = results_table(cfg, base, trained, len(agents))
    ranks.on_main(lambda: write_results(run, base, trained, table))
    print(f"\npass@1 (%) of each agent alone, {cfg.eval_limit or 'all'} questions per benchmark:\n{table}\n"
          f"[ilr] {run}/metrics.jsonl, {run}/curves.png, {run}/results.md", flush=True)
    return {"base": base, "trained": trained, "run": str(run)}


# ----------------------------------------------------------------------------------------------------------
# python ilr.py plot RUN_DIR  |  python ilr.py plot RUN_A RUN_B ... (compare.png)
# ----------------------------------------------------------------------------------------------------------

def read_metrics(run: Path) -> list[dict]:
    """The rows of RUN/metrics.jsonl; a one-line exit when RUN is not a run directory."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        sys.exit(f"ilr.py plot: {path}: no such file (is {run} a run directory?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_results(run: Path, base: dict, trained: dict, table: str) -> None:
    (run / "results.json").write_text(json.dumps({"base": base, "trained": trained}, indent=1))
    (run / "results.md").write_text(table + "\n")
    try:
        plot_run(run)
    except Exception as e:  # a plot is a convenience: never lose a finished run over it
        print(f"[ilr] plot failed: {e}")


def plot_run(run: Path) -> dict:
    """Training curves of a run: reward per agent (raw and calibrated), accuracy, cooperation share, KL."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_metrics(run)
    curve = read_curve(run)
    steps = [r["step"] for r in rows]
    agents = sorted({k.split("/")[0] for r in rows for k in r if k.startswith("agent")})
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for a in agents:
        line, = axes[0, 0].plot(steps, [r[f"{a}/reward"] for r in rows], marker="o", label=f"{a} raw")
        axes[0, 0].plot(steps, [r[f"{a}/calibrated_reward"] for r in rows], ls="--", color=line.get_color(),
                        label=f"{a} calibrated (Eq. 5)")
        axes[0, 1].plot(steps, [r[f"{a}/accuracy"] for r in rows], marker="o", label=a)
    for key in sorted({k for points in curve.values() for k in points}):   # --eval_steps: the held-out curve
        at = [s for s in curve if key in curve[s]]
        axes[0, 1].plot(at, [curve[s][key] / 100 for s in at], ls=":", marker="s", label=f"{key} held-out")
    coop = [float("nan") if r["ilr/cooperation_share"] is None else r["ilr/cooperation_share"] for r in rows]
    axes[1, 0].plot(steps, coop, marker="o", color="tab:green")  # nan (not drawn) for --method grpo
    axes[1, 1].plot(steps, [r["kl"] for r in rows], marker="o", color="tab:red")
    config = Path(run) / "config.json"
    beta = json.loads(config.read_text()).get("beta") if config.is_file() else None
    kl_title = "KL to reference" + (" (beta = 0: none loaded)" if beta == 0 else "")
    titles = ["mean reward per agent", "accuracy of trained answers" + (" (dotted: held-out, alone)" if curve else ""),
              "cooperation share (IRT)", kl_title]
    for ax, title in zip(axes.flat, titles):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    axes[1, 0].set_ylim(-0.05, 1.05)
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(f"ILR run {Path(run).name}")
    fig.tight_layout()
    out = Path(run) / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"[ilr] wrote {out}")
    return {"plot": str(out)}


def compare_runs(runs: list[Path], out: Path | None = None) -> dict:
    """Several runs on one picture (e.g. --method ilr vs grpo, or an ablation): the mean raw reward and the
    accuracy of the trained answers per step, each run's final evaluation (results.json) in its legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for run in map(Path, runs):
        rows = read_metrics(run)
        results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
        final = ", ".join(f"{v:.0f}" for v in results.get("trained", {}).values())
        label = run.name + (f" (alone after: {final} %)" if final else "")
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["reward"] for r in rows], marker="o", label=label)  # mean over agents and groups
        axes[1].plot(steps, [r["accuracy"] for r in rows], marker="o", label=label)
    for ax, title in zip(axes, ["mean reward of the trained answers", "accuracy of the trained answers"]):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out) if out else Path(runs[0]).parent / "compare.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"[ilr] wrote {out}")
    return {"plot": str(out)}


if __name__ == "__main__":
    main()
