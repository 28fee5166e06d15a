"""
adapters.py — every agent a LoRA adapter on a shared frozen base (`ilr.py --use_peft`), QLoRA, 8-bit AdamW.

Where it sits: ilr.make_agents builds the agents through `make_adapter_agents` when --use_peft is on; nothing
else in the loop changes. Each agent's `model` is an `AgentView`: it generates, scores and trains exactly like a
whole model (llm.generate, grpo.grpo_step and ilr's checkpoints call it as they call one), but its forward
passes run with ITS adapter and its parameters, state dict and save_pretrained are its adapter's only. Its
`ref_model` (beta > 0) is a `ReferenceView`: the same base with every adapter disabled — no second model.

    python ilr.py --preset tiny --use_peft                        # two adapters on one tiny base
    python ilr.py --preset demo --use_peft --learning_rate 2e-4   # LoRA wants ~10x full fine-tuning's lr
    python ilr.py --preset demo --use_peft --load_in_4bit         # QLoRA: the shared base in NF4
    python evaluate.py --model runs/ilr/final/agent0              # base (named in adapter_config.json) + adapter
    python adapters.py merge runs/ilr/final/agent0 merged/        # a plain Hugging Face model (vLLM, lm-eval)
    pytest tests/test_adapters.py

Choices (OURS; the paper trains whole models):
1. Agents whose models have the same name share ONE frozen base, each with its adapter `agent{i}` (PEFT's
   add_adapter); agents of different models each get their own base. TRL's names and defaults (ModelConfig:
   r 16, alpha 32, dropout 0.05, "all-linear": every linear layer of the blocks, MLP included, not lm_head).
2. Each agent's optimizer holds exactly its adapter's parameters, selected BY NAME (`.lora_A.agent0.`), not by
   requires_grad: PEFT's set_adapter switches requires_grad off for the inactive adapters (peft#1303), so a
   requires_grad selection made while another adapter was active would silently hold nothing.
3. The reference of the KL term (beta > 0) is the base with the adapters disabled (TRL's GRPOTrainer does the
   same with a peft_config): the adapters start at zero (LoRA's B = 0), so it IS the initial policy.
4. Checkpoints and final/agent{i}/ hold the adapter only (PEFT's format: adapter_config.json names the base,
   adapter_model.safetensors): megabytes. `llm.load_model(FOLDER)` loads base + adapter (evaluate.py, irt.py).
5. QLoRA (--load_in_4bit): the base's linear layers in bitsandbytes NF4 (double quantization, compute in the
   run's precision), PEFT's prepare_model_for_kbit_training, adapters in fp32 (as TRL). The evaluation of a
   trained QLoRA adapter loads the base unquantised (its names the same model; the usual way to serve QLoRA).
6. Generation: the agents of one base sample an Idea3 stage in ONE llm.generate call on the PeftModel, each prompt
   with its agent's adapter (PEFT's adapter_names, inference only; idea3 choice 12), where that runs fewer batches
   than one call per agent; else one call each (`AgentView.generate`). Same greedy ids either way
   (tests/test_adapters.py). Measured (bench/adapters_generate.py, 2026-12-07, 1 thread, CPU seconds, SmolLM2-135M,
   docs/RESULTS.md "Adapters"): merged batches 7.6-7.8 -> 6.6-6.9 s (greedy, 4 prompts per agent) and 23.0-24.4 ->
   20.2-20.9 s (one Idea3 step at ilr's defaults); nothing merged (each agent's n = 4 samples fill a batch) 11.9-12.3
   -> 13.5-14.3 s, PEFT's per-row gather and scatter in every LoRA layer for nothing: hence the rule. ilr's
   `--method grpo` baseline (ilr.generate_groups) still makes one call per agent.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

import llm

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def need_package(name: str, what: str):
    """Import `name` or stop with one line that names the package (llm.ModelError: the CLIs print it)."""
    import importlib
    import logging

    # bitsandbytes (which peft imports) logs at import that the optional `kernels` package is missing on a CPU: its
    # own CPU code then runs the 4-bit matmuls (the tests run them), so the line says nothing a user must act on.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        return importlib.import_module(name)
    except ImportError:
        raise llm.ModelError(f"{what} needs the package {name!r}: pip install -r requirements.txt") from None


# ----------------------------------------------------------------------------------------------------------
# Building: one base per distinct model, one adapter per agent
# ----------------------------------------------------------------------------------------------------------

def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules: str = "all-linear"):
    """PEFT's LoraConfig from ilr's settings (TRL's ModelConfig names); "all-linear" or comma-separated names."""
    peft = need_package("peft", "--use_peft")
    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",")]
    return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                           task_type="CAUSAL_LM", bias="none")


def attach_adapters(base, adapters: list[str], config, seeds: list[int] | None = None):
    """A PeftModel over `base` with one (zero-initialised B, so inert) adapter per name; the base is frozen.
    seeds[k] (if given) seeds adapter k's random A: each adapter starts the same whether it is built beside the
    others (one process) or alone (its own rank under torchrun, ranks.py)."""
    peft = need_package("peft", "--use_peft")
    for k, name in enumerate(adapters):
        if seeds is not None:
            torch.manual_seed(seeds[k])
        if k == 0:
            model = peft.get_peft_model(base, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
    return model


def adapter_parameters(model, adapter: str) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of `adapter`'s weights, by name (choice 2): `...q_proj.lora_A.agent0.weight`."""
    return [(n, p) for n, p in model.named_parameters() if ".lora_" in n and f".{adapter}." in f"{n}."]


def base_name(name: str, seed: int) -> str:
    """What adapter_config.json records as the base: ilr's model name; "tiny:SEED" for the test model, and an
    absolute path for a local folder (so the adapter loads from any working directory).

    >>> base_name("tiny", 3), base_name("smollm2-135m", 0), base_name("Qwen/Qwen2.5-7B-Instruct", 0)
    ('tiny:3', 'smollm2-135m', 'Qwen/Qwen2.5-7B-Instruct')
    """
    if name == "tiny":
        return f"tiny:{seed}"
    return str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else name


def nf4_config(precision: str):
    """QLoRA's base quantisation (Dettmers et al. 2023; TRL's get_quantization_config): NF4, double quantisation,
    matmuls in the run's precision (bf16 / fp16 autocast, else fp32)."""
    need_package("bitsandbytes", "--load_in_4bit")
    from transformers import BitsAndBytesConfig

    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def make_adapter_agents(cfg, names: list[str], load, device, precision: str) -> list[tuple]:
    """(AgentView, ReferenceView or None, tokenizer) per agent: one base per distinct name in `names`, adapter
    `agent{i}` on the base of agent i's name. `load(name, seed)` is ilr.load_agent_model (fp32 base, CPU).
    A name None is an agent another process holds (torchrun, ranks.py): nothing is built for it (None)."""
    config = lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    shared: dict[str, tuple] = {}                                  # model name -> (PeftModel, tokenizer)
    for name in dict.fromkeys(n for n in names if n is not None):  # distinct names, in order
        agents_here = [i for i, n in enumerate(names) if n == name]
        adapters = [f"agent{i}" for i in agents_here]
        if cfg.load_in_4bit:
            base, tokenizer = llm.load_base(base_name(name, cfg.seed), quantization_config=nf4_config(precision))
            peft = need_package("peft", "--use_peft")
            llm.place(base, device, precision)                     # packed 4-bit weights move, keep their dtype
            base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)  # fp32 norms
        else:
            base, tokenizer = load(name, cfg.seed)
            llm.place(base, device, precision, llm.TORCH_DTYPES[cfg.torch_dtype])
        base.requires_grad_(False)                                 # frozen: only adapters train
        if cfg.gradient_checkpointing:  # transformers 5 checkpoints non-reentrantly: a frozen embedding needs no
            base.activation_checkpointing_enable()                 # enable_input_require_grads (tests check grads)
        model = attach_adapters(base, adapters, copy.deepcopy(config),     # a config object per base; agent i's
                                [cfg.seed * 1000 + i for i in agents_here])  # A seeded by (seed, i)
        for adapter in adapters:                                   # written to adapter_config.json
            model.peft_config[adapter].base_model_name_or_path = base_name(name, cfg.seed)
        model.eval()
        shared[name] = (model, tokenizer)
    agents = []
    for i, name in enumerate(names):
        if name is None:
            agents.append(None)
            continue
        model, tokenizer = shared[name]
        agents.append((AgentView(model, f"agent{i}"), ReferenceView(model) if cfg.beta > 0 else None, tokenizer))
    return agents


def make_optimizer(params, optim: str, lr: float) -> torch.optim.Optimizer:
    """AdamW over `params` (weight decay 0, as ilr has always used): "adamw_torch" (fp32 moments, fused: one kernel
    for all parameters) or "adamw_8bit" (bitsandbytes' block-wise 8-bit moments: 2 B per parameter instead of 8;
    tensors under 4096 elements keep fp32 moments, bitsandbytes' min_8bit_size)."""
    if optim == "adamw_8bit":
        bnb = need_package("bitsandbytes", "--optim adamw_8bit")
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)


# ----------------------------------------------------------------------------------------------------------
# One agent's face of a shared PeftModel, and the reference (adapters off)
# ----------------------------------------------------------------------------------------------------------

class AgentView:
    """Agent `adapter` of a PeftModel that may carry other agents' adapters. Reads and writes of attributes
    (config, device, generation_config, train(), eval(), modules(), ...) go to the PeftModel; what differs:
      __call__ / forward / generate  run with this adapter active (PEFT's set_adapter, switched only on change)
      parameters / named_parameters  this adapter's weights only (choice 2): the optimizer, grad clipping
      state_dict / load_state_dict   this adapter's weights: ilr's checkpoints hold the adapter only
      save_pretrained                PEFT's adapter folder (adapter_config.json names the base)"""

    def __init__(self, model, adapter: str):
        object.__setattr__(self, "peft_model", model)
        object.__setattr__(self, "adapter", adapter)

    def __getattr__(self, name):
        return getattr(self.peft_model, name)

    def __setattr__(self, name, value):
        setattr(self.peft_model, name, value)

    def __repr__(self):
        return f"AgentView({self.adapter!r} of {type(self.peft_model.get_base_model()).__name__})"

    def activate(self):
        """Make this adapter the active one: its weights in the forward pass, and requires_grad on them."""
        if self.peft_model.active_adapters != [self.adapter]:
            self.peft_model.set_adapter(self.adapter)

    def __call__(self, *args, **kwargs):
        self.activate()
        return self.peft_model(*args, **kwargs)

    forward = __call__

    def generate(self, *args, **kwargs):
        self.activate()
        return self.peft_model.generate(*args, **kwargs)

    def named_parameters(self, *args, **kwargs):
        return iter(adapter_parameters(self.peft_model, self.adapter))

    def parameters(self, *args, **kwargs):
        return iter([p for _, p in adapter_parameters(self.peft_model, self.adapter)])

    def state_dict(self, *args, **kwargs) -> dict:
        return {n: p.detach() for n, p in adapter_parameters(self.peft_model, self.adapter)}

    def load_state_dict(self, state: dict, strict: bool = True):
        params = dict(adapter_parameters(self.peft_model, self.adapter))
        if params.keys() != state.keys():
            raise ValueError(f"{self.adapter}: the checkpoint's adapter has other weights than this model's")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])

    def save_pretrained(self, folder, **kwargs):
        """PEFT's adapter folder for this adapter alone (at the top of `folder`, whatever the adapter's name)."""
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.peft_model.peft_config[self.adapter].save_pretrained(folder)
        weights = get_peft_model_state_dict(self.peft_model, adapter_name=self.adapter)
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, folder / ADAPTER_WEIGHTS)


class ReferenceView(AgentView):
    """The shared base with every adapter disabled (choice 3): the reference log-probs of the KL term."""

    def __init__(self, model):
        super().__init__(model, adapter="")

    def __repr__(self):
        return f"ReferenceView({type(self.peft_model.get_base_model()).__name__}, adapters disabled)"

    def __call__(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)

    forward = __call__

    def generate(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model.generate(*args, **kwargs)

    def named_parameters(self, *args, **kwargs):
        return iter([])

    def parameters(self, *args, **kwargs):
        return self.peft_model.get_base_model().parameters()


# ----------------------------------------------------------------------------------------------------------
# Merging an adapter folder into its base (loading one is llm.load_adapter's: every command line loads them)
# ----------------------------------------------------------------------------------------------------------

def merge(folder, out) -> Path:
    """Write base + adapter of `folder` as ONE plain Hugging Face model in `out` (PEFT's merge_and_unload: W + (alpha
    / r) B A in every adapted layer), with the tokenizer: what vLLM or lm-eval load without PEFT."""
    model, tokenizer = llm.load_adapter(folder)
    merged = model.merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> Path:
    """`python adapters.py merge ADAPTER_FOLDER OUT_DIR`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "merge":
        sys.exit("usage: python adapters.py merge ADAPTER_FOLDER OUT_DIR   (e.g. runs/ilr/final/agent0 merged/)")
    if not (Path(argv[1]) / llm.ADAPTER_CONFIG).is_file():
        sys.exit(f"adapters.py: error: {argv[1]} holds no {llm.ADAPTER_CONFIG} (not an adapter folder)")
    try:
        out = merge(argv[1], argv[2])
    except llm.ModelError as e:
        sys.exit(f"adapters.py: error: {e}")
    print(f"[adapters] {argv[1]} merged into its base: {out} (python evaluate.py --model {out})")
    return out


if __name__ == "__main__":
    main()
