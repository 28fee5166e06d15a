"""bench/: the adapter pair (`bench_grpo.py --use_peft`) compares the same LoRA on both sides. Ours is built by
ilr.make_agents (the bench's own path); TRL's side is what GRPOTrainer 1.16 does with a peft_config
(`get_peft_model(model, peft_config)`, trl/trainer/grpo_trainer.py), given workers.trl_peft_config. TRL itself is not
needed (it lives in bench/.venv-trl only). Tiny random model, a few seconds."""
import importlib.util
import sys

import pytest

import ilr
import llm
from conftest import ROOT


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


workers, bench_grpo = load("workers"), load("bench_grpo")
LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "lora_target_modules": "all-linear"}


def ours_signature(**lora):
    config = ilr.Config(models="tiny", num_agents=1, beta=0.04, learning_rate=2e-4,
                        **workers.ours_adapter_settings(LORA | lora))
    agent = ilr.make_agents(config)[0]
    return workers.adapter_signature(agent.model.peft_model), workers.optimizer_signature(agent.optimizer)


def trl_signature(**lora):
    import peft
    model, _ = llm.tiny_model(seed=0)
    return workers.adapter_signature(peft.get_peft_model(model, workers.trl_peft_config(LORA | lora)))


def test_the_same_lora_on_both_sides_and_a_different_one_stops_the_bench():
    ours, optimizer = ours_signature()
    same = bench_grpo.same_adapters(ours, trl_signature())
    # tiny: 2 layers x 7 linears (q, k, v, o, gate, up, down), not lm_head
    assert same["modules"] == 14 and same["lora_tensors"] == 28 and same["r"] == 4 and same["alpha"] == 8
    assert optimizer["params"] == same["lora_params"] > 0 and optimizer["lr"] == 2e-4
    with pytest.raises(SystemExit, match="modules: ours 14, TRL 4"):
        bench_grpo.same_adapters(ours, trl_signature(lora_target_modules="q_proj,v_proj"))
    with pytest.raises(SystemExit, match="r/alpha/dropout"):
        bench_grpo.same_adapters(ours, trl_signature(lora_alpha=16))
    assert workers.trl_peft_config({"use_peft": False}) is None and workers.ours_adapter_settings({}) == {}
