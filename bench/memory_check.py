"""bench/memory_check.py — memory.py's plan against the measured peak of one GRPO update, on the CPU (issue 21, item 7).

For each model and setting: the plan of one agent's update (the "train" phase of `memory.plan`) and the peak of live
tensor bytes of a real `grpo.grpo_step` at the plan's shapes (`memory.measure_train_peak`: B 2 questions x G 8
answers of 32 tokens after a QUESTION_TOKENS-long prompt, micro-batch 8: two micro-batches; fp32, as on the CPU; the
second step is measured, when the gradients and AdamW's states exist). Prints a markdown table for docs/RESULTS.md.

    .venv/bin/python bench/memory_check.py                              # tiny and the embedded SmolLM2-135M
    .venv/bin/python bench/memory_check.py --models tiny --settings full,adapters
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ilr  # noqa: E402
import memory  # noqa: E402

SETTINGS = {"full": {}, "checkpointing": {"gradient_checkpointing": True}, "adapters": {"use_peft": True}}


def check_config(name: str, setting: str) -> ilr.Config:
    return ilr.Config(models=name, method="grpo", num_agents=1, device="cpu", questions_per_step=2,
                      num_generations=8, micro_batch_size=8, max_completion_length=32, temperature=0.7,
                      **SETTINGS[setting])


def check(name: str, setting: str) -> tuple[float, float]:
    """(planned, measured) bytes of one agent's GRPO update of `name` under SETTINGS[setting]."""
    cfg = check_config(name, setting)
    model, _ = ilr.load_agent_model(name, cfg.seed)
    if cfg.use_peft:   # as issue 21 checked it: one adapter on all linear layers, AdamW over its parameters
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules="all-linear"))
    return memory.plan(cfg, ilr.model_names(cfg)).phases["train"], memory.measure_train_peak(cfg, model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2-135m")
    parser.add_argument("--settings", default="full,checkpointing,adapters")
    parser.add_argument("--plan_only", action="store_true", help="the planned column only (seconds, no model)")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    if not set(settings) <= set(SETTINGS):
        parser.error(f"--settings: choose from {', '.join(SETTINGS)}")
    print("| model | setting | planned | measured | planned / measured |\n|---|---|---|---|---|")
    for name in args.models.split(","):
        for setting in settings:
            start = time.time()
            if args.plan_only:
                cfg = check_config(name, setting)
                planned = memory.plan(cfg, ilr.model_names(cfg)).phases["train"]
                print(f"| {name} | {setting} | {planned / 1e6:,.0f} MB |")
                continue
            planned, measured = check(name, setting)
            print(f"| {name} | {setting} | {planned / 1e6:,.0f} MB | {measured / 1e6:,.0f} MB | "
                  f"{planned / measured:.2f} |  <!-- {time.time() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
