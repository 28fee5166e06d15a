"""
bench/workers.py — one benchmark worker process: ours (GRPO), TRL's GRPOTrainer, or ours (ILR), one step per order.

bench_grpo.py starts one worker per implementation and configuration (so peak RSS is each one's own), and drives
them in turns (A B A B ...). The protocol is line-based: the parent writes `step`, `profile` or `quit` on the
worker's stdin; the worker answers with one line `@@BENCH <json>` on stdout (READY after loading, STEP after
each step, DONE with its peak RSS). Everything else a worker prints goes to its log.

    python bench/workers.py ours --config '{"beta": 0.04, ...}'     # normally started by bench_grpo.py
    python bench/workers.py trl  --config '{...}'                   # needs the bench venv (trl installed)
    python bench/workers.py ilr  --config '{...}'

What is timed, the same way for every implementation (class-level wrappers, installed before the model exists):
    generation  transformers' GenerationMixin.generate (both call it; no tokenisation or decoding inside)
    reward      evaluate.reward (the grader; ours' answer_reward and TRL's reward function both call it)
    logps_grad  the policy forward that is back-propagated (ours: grpo.shared_prefix_logps, or
                grpo.per_token_logps where it falls back; TRL: _get_per_token_logps_and_entropies with grad enabled)
    logps_nograd  forwards without grad: the reference model (beta > 0), or old log-probs if recomputed
    backward    torch.Tensor.backward
    optimizer   torch.nn.utils.clip_grad_norm_ + torch.optim.AdamW.step
    other       step wall time minus the above (prompt tokenisation, decoding, advantages, loss math, logging)
The same wrappers count tokens: real (non-padding) and padded slots of every forward, from the tensors passed in.

FLOPs of a step (useful work: real tokens only, padding not counted), with N_body = parameters without the
(tied) embedding, Vd = embedding parameters (the LM head), L layers, d_attn = heads x head_dim:
    forward of a sequence of S real tokens with K scored positions  = 2 N_body S + 2 Vd K + 2 L d_attn S^2
    (the S^2 term: QK^T and AV over the causal half). Generation: S = prompt + generated, K = generated.
    Training: 3 x forward (forward + backward) per back-propagated row; no-grad forwards count 1 x.
    Ours' shared-prefix forward (grpo.shared_prefix_logps) is counted as it runs: each distinct prompt once
    (S = its real tokens, K = 1), then each row's completion on the prompt's cache (S = its real completion
    tokens but the last, K = the same, attention over prompt + completion), so its FLOPs are the work done.

Workloads (the reward decides which rows can be skipped):
    answer  ilr.answer_reward (grader + 0.1 format term): groups whose 8 answers all score the same have zero
            advantage; ours skips those rows at beta = 0 (exact), TRL trains them
    length  len(completion text) / 100: the 8 answers of a group differ in length, so every group has signal and
            both implementations train every row (the grader still runs in ours, for the accuracy metric)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: ilr.py, grpo.py, llm.py, ...
sys.path.insert(0, str(ROOT))

PHASES = ("generation", "reward", "logps_grad", "logps_nograd", "backward", "optimizer")


def emit(kind: str, **payload) -> None:
    """One protocol line for the parent (bench_grpo.py)."""
    sys.stdout.write("@@BENCH " + json.dumps({"kind": kind, **payload}) + "\n")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: ru_maxrss is in KiB


# ----------------------------------------------------------------------------------------------------------
# 1) Phase timers and token counters (one Meter per process, reset at each step)
# ----------------------------------------------------------------------------------------------------------

class Meter:
    """Seconds per phase, call counts, and token / FLOP counts of the current step."""

    def __init__(self):
        self.shape = None  # model dimensions for FLOPs, set by set_model
        self.reset()

    def reset(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.counts = defaultdict(float)
        self.depth = 0

    def set_model(self, model):
        cfg = model.config
        unique = {id(p): p.numel() for n, p in model.named_parameters()  # tied weights counted once; LoRA's
                  if ".lora_" not in n}                                     # (a PEFT-wrapped base) not counted
        vd = model.get_input_embeddings().weight.numel()
        self.shape = {"params": sum(unique.values()), "n_body": sum(unique.values()) - vd, "vd": vd,
                      "layers": cfg.num_hidden_layers,
                      "d_attn": cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size //
                                                                  cfg.num_attention_heads)}

    def forward_flops(self, S: float, K: float, S2: float) -> float:
        """2 N_body S + 2 Vd K + 2 L d_attn S^2, summed over rows (S2 = sum of S^2)."""
        m = self.shape
        return 2 * m["n_body"] * S + 2 * m["vd"] * K + 2 * m["layers"] * m["d_attn"] * S2

    def timed(self, phase, fn):
        """Wrap fn so its wall time adds to `phase` (outermost timed call only, so nesting never double-counts)."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                name = phase(args, kwargs) if callable(phase) else phase
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1
                self.depth -= 1
        return wrapper

    def count_forward(self, input_ids, attention_mask, logits_to_keep: int, grad: bool):
        """Real tokens, padded slots and FLOPs of one log-prob forward over [n, P+T] ids."""
        import torch
        real = attention_mask.sum(-1).double()                                   # [n] S per row
        scored = attention_mask[:, -logits_to_keep:].sum(-1).double()            # [n] K per row (completion)
        key = "train" if grad else "nograd"
        self.counts[f"{key}_rows"] += input_ids.shape[0]
        self.counts[f"{key}_real_tokens"] += float(real.sum())
        self.counts[f"{key}_slots"] += input_ids.numel()
        self.counts[f"{key}_completion_tokens"] += float(scored.sum())
        flops = self.forward_flops(float(real.sum()), float(scored.sum()), float((real ** 2).sum()))
        self.counts[f"{key}_flops"] += (3 if grad else 1) * flops
        del torch

    def count_shared_prefix(self, input_ids, attention_mask, logits_to_keep: int, first_row, grad: bool):
        """Real tokens, slots and FLOPs of one grpo.shared_prefix_logps call that shares (no fall-back): the U
        distinct prompts (first_row [U], from grpo.prompt_groups) once, then every row's completion tokens but the
        last on its prompt's KV cache."""
        P = input_ids.shape[1] - logits_to_keep
        prompt_real = attention_mask[first_row, :P].sum(-1).double()             # [U]
        row_prompt = attention_mask[:, :P].sum(-1).double()                      # [n]
        comp = (attention_mask[:, P:].sum(-1).double() - 1).clamp_min(0)         # [n] completion positions forwarded
        S = float(prompt_real.sum() + comp.sum())
        S2 = float((prompt_real ** 2).sum() + ((row_prompt + comp) ** 2 - row_prompt ** 2).sum())
        key = "train" if grad else "nograd"
        self.counts[f"{key}_rows"] += input_ids.shape[0]
        self.counts[f"{key}_real_tokens"] += S
        self.counts[f"{key}_slots"] += len(first_row) * P + input_ids.shape[0] * (logits_to_keep - 1)
        self.counts[f"{key}_completion_tokens"] += float(attention_mask[:, P:].sum())
        self.counts[f"{key}_flops"] += (3 if grad else 1) * self.forward_flops(S, len(first_row) + float(comp.sum()),
                                                                               S2)

    def count_generate(self, input_ids, attention_mask, output, eos: set, copies: int):
        """Prompt and generated tokens of one model.generate call; padded slots = every row x every position."""
        import torch
        width = input_ids.shape[1]
        prompt_real = attention_mask.sum(-1).repeat_interleave(copies).double()  # [rows] P per row
        new = output[:, width:]                                                  # [rows, steps]
        is_eos = torch.isin(new, torch.tensor(sorted(eos), device=new.device))
        first = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 1, torch.full_like(is_eos[:, 0], new.shape[1],
                                                                                      dtype=torch.long))
        gen = first.double()                                                     # [rows] T per row (EOS incl.)
        S = prompt_real + gen
        self.counts["gen_rows"] += output.shape[0]
        self.counts["gen_prompt_tokens"] += float(prompt_real.sum())
        self.counts["gen_tokens"] += float(gen.sum())
        self.counts["gen_slots"] += output.numel()                               # incl. left pad, post-EOS steps
        self.counts["gen_flops"] += self.forward_flops(float(S.sum()), float(gen.sum()), float((S ** 2).sum()))

    def step_report(self, wall: float) -> dict:
        seconds = {p: round(self.seconds.get(p, 0.0), 3) for p in PHASES}
        seconds["other"] = round(wall - sum(seconds.values()), 3)
        return {"wall": round(wall, 3), "seconds": seconds, "calls": dict(self.calls),
                "counts": {k: round(v, 1) for k, v in self.counts.items()}, "peak_rss_mb": round(peak_rss_mb(), 1)}


METER = Meter()


def _eos_of(model, kwargs) -> set:
    gc = kwargs.get("generation_config") or model.generation_config
    ids = kwargs.get("eos_token_id", None) or gc.eos_token_id
    return set(ids if isinstance(ids, (list, tuple)) else [ids])


def install_common_timers():
    """Wrappers both implementations share: generate, grader, backward, clip + optimizer step."""
    import torch
    import transformers

    import evaluate

    original_generate = transformers.GenerationMixin.generate

    def generate(self, *args, **kwargs):
        out = original_generate(self, *args, **kwargs)
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        gc = kwargs.get("generation_config")
        copies = kwargs.get("num_return_sequences") or (gc.num_return_sequences if gc is not None else 1) or 1
        if METER.shape is not None and input_ids is not None:
            mask = kwargs.get("attention_mask")
            mask = torch.ones_like(input_ids) if mask is None else mask
            METER.count_generate(input_ids, mask, out, _eos_of(self, kwargs), copies)
        return out

    transformers.GenerationMixin.generate = METER.timed("generation", generate)
    evaluate.reward = METER.timed("reward", evaluate.reward)
    torch.Tensor.backward = METER.timed("backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = METER.timed("optimizer", torch.nn.utils.clip_grad_norm_)
    torch.optim.AdamW.step = METER.timed("optimizer", torch.optim.AdamW.step)


def grad_phase(args, kwargs):
    import torch
    return "logps_grad" if torch.is_grad_enabled() else "logps_nograd"


# ----------------------------------------------------------------------------------------------------------
# 2) The shared setup: the model, the 4 questions, threads
# ----------------------------------------------------------------------------------------------------------

def setup_torch(threads: int, seed: int):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def questions(cfg: dict) -> list[dict]:
    import data
    return data.synthetic_problems(cfg["num_questions"], seed=cfg["data_seed"], levels=tuple(cfg["levels"]))


def profile_table(prof, out_path: str, rows: int = 25) -> list[dict]:
    """Write the op table of a finished torch.profiler run (sorted by self CPU time); return its top rows."""
    averages = prof.key_averages()
    Path(out_path).write_text(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count} for e in top]


def step_profile(fn, out_path: str) -> list[dict]:
    """Run fn() under torch.profiler (CPU ops); -> the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        fn()
    return profile_table(prof, out_path)


# ----------------------------------------------------------------------------------------------------------
# 3) Ours: ilr.train_step (method "grpo" with 1 agent, or "ilr" with 2 agents), the training loop's own path
# ----------------------------------------------------------------------------------------------------------

def ours_worker(cfg: dict, method: str):
    import numpy as np
    import torch

    import grpo
    import idea3
    import ilr

    setup_torch(cfg["threads"], cfg["seed"])
    install_common_timers()
    grpo.per_token_logps = METER.timed(grad_phase, _counting(grpo.per_token_logps))
    grpo.shared_prefix_logps = METER.timed(grad_phase, _counting_shared(grpo.shared_prefix_logps))
    if cfg["workload"] == "length":
        ilr.group_rewards = lambda groups, format_reward, correct=None: length_rewards(groups)
    idea3_stats = {}
    original_run_idea3 = idea3.run_idea3

    def run_idea3(*args, **kwargs):                 # keep Idea3's own per-stage stats (seconds, tokens)
        result = original_run_idea3(*args, **kwargs)
        idea3_stats.update(result.stats)
        return result
    idea3.run_idea3 = run_idea3

    records = questions(cfg)
    B = len(records)
    config = ilr.Config(method=method, models=cfg["model"], num_agents=1 if method == "grpo" else 2,
                        questions_per_step=B, num_generations=cfg["num_generations"],
                        max_completion_length=cfg["max_completion_length"], temperature=cfg["temperature"],
                        beta=cfg["beta"], learning_rate=cfg["learning_rate"], seed=cfg["seed"],
                        micro_batch_size=cfg["micro_batch_size"], batch_size=cfg["gen_batch_size"],
                        peer_token_budget=cfg["max_completion_length"], num_val=1, eval_limit=1,
                        **ours_adapter_settings(cfg))
    ilr.check_config(config)
    agents = ilr.make_agents(config)
    # FLOPs are counted on the base's shapes (with adapters, agents[0].model.parameters() is the adapter alone)
    METER.set_model(agents[0].model.get_base_model() if config.use_peft else agents[0].model)
    adapters_of = adapter_signature(agents[0].model.peft_model) if config.use_peft else None
    # IRT inputs: fixed abilities 0.5 and difficulties alternating 0.2 / 0.8, so P = sigma(1.7 (0.5 - D)) gives
    # competition on half of the questions and cooperation on the other half (irt.py; grpo ignores them).
    difficulty = np.array([0.2, 0.8] * (B // 2) + [0.2] * (B % 2))
    abilities = [0.5] * len(agents)
    emit("READY", impl=f"ours-{method}", model_shape=METER.shape, peak_rss_mb=round(peak_rss_mb(), 1),
         torch=torch.__version__, threads=torch.get_num_threads(), adapters=adapters_of,
         ref_model=agents[0].ref_model is not None)

    step = 0
    for line in sys.stdin:
        order = line.strip()
        if order == "quit":
            break
        METER.reset()
        idea3_stats.clear()
        start = time.perf_counter()
        result = {}
        run = lambda: result.update(metrics=ilr.train_step(config, agents, records, difficulty, abilities,  # noqa
                                                           step)[0])
        top = step_profile(run, cfg["profile_out"]) if order == "profile" else run()
        metrics = result["metrics"]
        wall = time.perf_counter() - start
        report = METER.step_report(wall)
        report["ilr_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        report["idea3"] = dict(idea3_stats)
        report["optimizer"] = optimizer_signature(agents[0].optimizer)
        if top:
            report["profile_top"] = top
        step += 1
        emit("STEP", step=step, **report)
    emit("DONE", peak_rss_mb=round(peak_rss_mb(), 1))


def length_reward(text: str) -> float:
    """The `length` workload's reward of one completion (both implementations): characters / 100."""
    return len(text) / 100


def length_rewards(groups):
    """Ours' rewards [num_groups, G] for the `length` workload (ilr.group_rewards' signature)."""
    import torch
    return torch.tensor([[length_reward(t) for t in g.texts] for g in groups])


def ours_adapter_settings(cfg: dict) -> dict:
    """ilr.Config's adapter settings from the bench's (empty without use_peft: whole models)."""
    if not cfg.get("use_peft"):
        return {}
    return {"use_peft": True, "lora_r": cfg["lora_r"], "lora_alpha": cfg["lora_alpha"],
            "lora_dropout": cfg["lora_dropout"], "lora_target_modules": cfg["lora_target_modules"]}


def trl_peft_config(cfg: dict):
    """The peft.LoraConfig handed to TRL's GRPOTrainer: the same r, alpha, dropout and target modules as ours
    (TRL's ModelConfig / get_peft_config names; "all-linear" or comma-separated module names)."""
    if not cfg.get("use_peft"):
        return None
    import peft
    targets = cfg["lora_target_modules"]
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
    return peft.LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                           target_modules=targets, task_type="CAUSAL_LM", bias="none")


def adapter_signature(peft_model) -> dict:
    """What "all-linear" selected on one side: the adapted modules (names without PEFT's `base_model.model.`
    prefix), the LoRA parameters (count and elements, every adapter of the model), and each adapter's r, alpha,
    dropout. bench_grpo.same_adapters compares ours' and TRL's."""
    modules = sorted(name.removeprefix("base_model.model.") for name, m in peft_model.named_modules()
                     if hasattr(m, "lora_A") and len(m.lora_A) > 0)
    params = [(n, p) for n, p in peft_model.named_parameters() if ".lora_" in n]
    configs = {name: {"r": c.r, "alpha": c.lora_alpha, "dropout": c.lora_dropout}
               for name, c in peft_model.peft_config.items()}
    return {"modules": modules, "lora_tensors": len(params), "lora_params": sum(p.numel() for _, p in params),
            "trainable_params": sum(p.numel() for _, p in params if p.requires_grad), "configs": configs}


def optimizer_signature(optimizer) -> dict:
    """The optimizer's parameter elements and learning rate (the same on both sides: bench_grpo checks)."""
    if optimizer is None:
        return {}
    return {"params": sum(p.numel() for g in optimizer.param_groups for p in g["params"]),
            "lr": optimizer.param_groups[0]["lr"], "class": type(optimizer).__name__}


def _counting_shared(shared_prefix_logps):
    """grpo.shared_prefix_logps, counting what it runs; where it falls back to per_token_logps (no prompt repeats,
    or gradient checkpointing), that function's own counter counts instead."""
    import torch

    import grpo

    @functools.wraps(shared_prefix_logps)
    def wrapper(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        first_row, prompt_of_row = grpo.prompt_groups(input_ids, attention_mask, logits_to_keep)
        if len(first_row) < len(prompt_of_row) and not grpo.uses_checkpointing(model):
            METER.count_shared_prefix(input_ids, attention_mask, logits_to_keep, first_row,
                                      grad=torch.is_grad_enabled())
        return shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
    return wrapper


def _counting(per_token_logps):
    """grpo.per_token_logps, counting the rows/tokens/FLOPs of each call."""
    import torch

    @functools.wraps(per_token_logps)
    def wrapper(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        METER.count_forward(input_ids, attention_mask, logits_to_keep, grad=torch.is_grad_enabled())
        return per_token_logps(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
    return wrapper


# ----------------------------------------------------------------------------------------------------------
# 4) TRL: GRPOTrainer with the equivalent GRPOConfig; a callback hands each step's control to the parent
# ----------------------------------------------------------------------------------------------------------

def trl_worker(cfg: dict):
    import datasets
    import torch
    import transformers
    import trl
    from trl import GRPOConfig, GRPOTrainer

    import ilr
    import llm

    setup_torch(cfg["threads"], cfg["seed"])
    install_common_timers()
    GRPOTrainer._get_per_token_logps_and_entropies = METER.timed(
        grad_phase, _counting_trl(GRPOTrainer._get_per_token_logps_and_entropies))

    records = questions(cfg)
    by_id = {r["id"]: r for r in records}
    import evaluate
    train_dataset = datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": evaluate.test_prompt(r)}], "record_id": r["id"]} for r in records])

    def answer_reward(prompts, completions, record_id, **kwargs):
        """The same reward as ours: ilr.answer_reward (grader + format term) on the completion text, or for the
        `length` workload characters / 100 (as ours' length_rewards)."""
        if cfg["workload"] == "length":
            return [length_reward(c[0]["content"]) for c in completions]
        return [ilr.answer_reward(c[0]["content"], by_id[i], cfg["format_reward"]) for c, i in
                zip(completions, record_id)]

    model, tokenizer = llm.load_model(None if cfg["model"] == "smollm2-135m" else cfg["model"])
    model.train()
    METER.set_model(model)
    B, G = len(records), cfg["num_generations"]
    micro = cfg["micro_batch_size"]
    args = GRPOConfig(
        output_dir=cfg["trl_output_dir"], report_to="none", use_cpu=True, bf16=False, fp16=False,
        per_device_train_batch_size=micro,                 # rows per forward/backward (ours: micro_batch_size)
        gradient_accumulation_steps=B * G // micro,        # 32 completions -> exactly one optimizer step
        num_generations=G, max_completion_length=cfg["max_completion_length"], temperature=cfg["temperature"],
        top_p=1.0, top_k=0, beta=cfg["beta"], learning_rate=cfg["learning_rate"], lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2, num_iterations=1,
        loss_type="grpo", scale_rewards="group",           # ours: loss_type="grpo", scale_rewards="std"
        gradient_checkpointing=False,                      # ours: off by default (TRL's default is on)
        use_vllm=False, max_steps=cfg["trl_max_steps"], logging_strategy="no", save_strategy="no",
        eval_strategy="no", disable_tqdm=True, seed=cfg["seed"], dataloader_num_workers=0,
        log_completions=False)
    control = make_step_control()
    trainer = GRPOTrainer(model=model, reward_funcs=answer_reward, args=args, train_dataset=train_dataset,
                          processing_class=tokenizer, callbacks=[control], peft_config=trl_peft_config(cfg))
    control.trainer = trainer
    adapters_of = adapter_signature(trainer.model) if cfg.get("use_peft") else None
    emit("READY", impl="trl", model_shape=METER.shape, peak_rss_mb=round(peak_rss_mb(), 1),
         torch=torch.__version__, trl=trl.__version__, transformers=transformers.__version__,
         threads=torch.get_num_threads(), ref_model=trainer.ref_model is not None,
         optimizer=args.optim, generation_batch_size=args.generation_batch_size, adapters=adapters_of)
    control.profile_out = cfg["profile_out"]
    trainer.train()
    emit("DONE", peak_rss_mb=round(peak_rss_mb(), 1))


def _counting_trl(method):
    import torch

    @functools.wraps(method)
    def wrapper(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        METER.count_forward(input_ids, attention_mask, logits_to_keep, grad=torch.is_grad_enabled())
        return method(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
    return wrapper


def make_step_control():
    """A TrainerCallback that blocks the Trainer between optimizer steps until the parent orders the next one."""
    from transformers import TrainerCallback

    class StepControl(TrainerCallback):
        def __init__(self):
            self.start, self.profiler, self.step, self.profile_out, self.trainer = None, None, 0, None, None

        def wait(self, control):
            order = sys.stdin.readline().strip()
            if order in ("", "quit"):
                control.should_training_stop = True
                return control
            METER.reset()
            if order == "profile":
                from torch.profiler import ProfilerActivity, profile
                self.profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
                self.profiler.__enter__()
            self.start = time.perf_counter()
            return control

        def on_train_begin(self, args, state, control, **kwargs):
            return self.wait(control)

        def on_step_end(self, args, state, control, **kwargs):
            wall = time.perf_counter() - self.start
            report = METER.step_report(wall)
            if self.profiler is not None:
                self.profiler.__exit__(None, None, None)
                report["profile_top"] = profile_table(self.profiler, self.profile_out)
                self.profiler = None
            metrics = getattr(self.trainer, "_metrics", {}).get("train", {})
            report["trl_metrics"] = {k: float(v[-1]) for k, v in metrics.items()
                                     if v and isinstance(v[-1], (int, float))}
            report["optimizer"] = optimizer_signature(self.trainer.optimizer)
            self.step += 1
            emit("STEP", step=self.step, **report)
            return self.wait(control)

    return StepControl()


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="one benchmark worker (started by bench_grpo.py)")
    parser.add_argument("impl", choices=("ours", "trl", "ilr"))
    parser.add_argument("--config", required=True, help="JSON settings from bench_grpo.py")
    args = parser.parse_args(argv)
    cfg = json.loads(args.config)
    os.chdir(ROOT)
    if args.impl == "trl":
        trl_worker(cfg)
    else:
        ours_worker(cfg, "grpo" if args.impl == "ours" else "ilr")


if __name__ == "__main__":
    main()
