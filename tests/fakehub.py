"""A fake Hugging Face Hub for tests: a Hugging Face cache, built in a temporary folder, that holds what a user's
machine holds after loading the README's Hub models and benchmarks once — so the Hub code paths (model ids with
dots, `datasets.load_dataset(id, config, split=...)`) run offline, as they would on a user's machine with
`HF_HUB_OFFLINE=1`. No network, a few seconds to build; the conftest fixture `fake_hub` builds it once a session.

Models, under their real ids (the `gpu-small` pair of ilr.PRESETS), tiny and random but with the quirks of the
real ones (from their Hub config / tokenizer_config / generation_config files):
- "Qwen/Qwen2.5-0.5B-Instruct": Qwen2 architecture (q/k/v biases), checkpoint saved in bf16, a tokenizer WITHOUT
  a pad token (the harder case: llm must choose one; the real tokenizer_config names <|endoftext|>), a chat
  template that adds Qwen's default system prompt when the chat has none, eos [<|im_end|>, <|endoftext|>] and
  Qwen's own sampling settings (do_sample, temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05) in
  generation_config.json.
- "HuggingFaceTB/SmolLM2-360M-Instruct": Llama architecture, bf16, SmolLM2's tokenizer and template as they are.
The tokenizer of both is the real SmolLM2 one (from llm's converted cache; it has <|im_start|>/<|im_end|>): the
Qwen stand-in gets Qwen's template, special tokens and eos list on top of it.
Beside this cache, `build_configs` writes a second one holding only the REAL config.json of the paper's and the
presets' models (Qwen2.5 0.5B-14B, Llama-3.1-8B, SmolLM2-360M): what memory.py plans from (test_memory's fixture).

Layout (as huggingface_hub writes it; files are plain files, not blob symlinks):
    HF_HOME/hub/models--Qwen--Qwen2.5-0.5B-Instruct/refs/main                 → the revision (40 hex digits)
    HF_HOME/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/<rev>/config.json, model.safetensors, ...
    HF_HOME/hub/datasets--openai--gsm8k/snapshots/<rev>/README.md, main/test-00000-of-00001.parquet, ...
    HF_HOME/datasets/openai___gsm8k/main/0.0.0/<rev>/...                     → the prepared Arrow cache
Offline, `datasets.load_dataset` reads only the prepared Arrow cache (its offline path, `CachedDatasetModuleFactory`
in datasets 5.2), which an online first load writes from the snapshot files. `prepare_dataset` writes it the same
way: the snapshot read as the Hub module would read it (README configs, data files), the revision as the cache
hash, the dataset's name, and the result moved under <owner>___<name>/ (where the Hub module's repo_id puts it).

Benchmarks: a few rows of each local file (../shared/data, never copied into the repository), renamed to the
fields of its Hub dataset card (see data.HUB's comment); `FakeHub.rows[name]` keeps the local rows used, in order,
so tests compare the Hub path with the local converters on the same rows.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
SMOL = "HuggingFaceTB/SmolLM2-360M-Instruct"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's template without its tool-calling branches: a system turn with the default prompt first
# when the chat does not start with one.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# SmolLM2's tokenizer numbers the special tokens <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 (Qwen: 151643,
# 151644, 151645); Qwen2.5-Instruct's generation_config.json with those ids.
ENDOFTEXT, IM_END = 0, 2
QWEN_GENERATION = {"bos_token_id": ENDOFTEXT, "pad_token_id": ENDOFTEXT, "do_sample": True,
                   "eos_token_id": [IM_END, ENDOFTEXT], "repetition_penalty": 1.05, "temperature": 0.7,
                   "top_p": 0.8, "top_k": 20}
SMOL_GENERATION = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def revision(repo: str) -> str:
    """A stable fake commit hash per repository."""
    return hashlib.sha1(repo.encode()).hexdigest()


def snapshot(hub_cache: Path, kind: str, repo: str) -> Path:
    """The snapshot folder of `repo` ("model" or "dataset"), with refs/main pointing at it."""
    folder = hub_cache / f"{kind}s--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision(repo))
    path = folder / "snapshots" / revision(repo)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

def build_models(hub_cache: Path, tokenizer_dir: Path, hidden_size: int = 64, seed: int = 0) -> dict[str, Path]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    small = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    paths = {}

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    path = paths[QWEN] = snapshot(hub_cache, "model", QWEN)
    tokenizer.pad_token = None                 # Qwen's quirk here: no pad token (llm must pick one itself)
    tokenizer.bos_token = None                 # Qwen has none either
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = QWEN_TEMPLATE
    tokenizer.save_pretrained(path)
    config = Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=32768, bos_token_id=ENDOFTEXT,
                         eos_token_id=IM_END, **small)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(path)      # bf16 on disk, as Qwen ships it
    (path / "generation_config.json").write_text(json.dumps(QWEN_GENERATION, indent=2))

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)               # SmolLM2's own, template included
    path = paths[SMOL] = snapshot(hub_cache, "model", SMOL)
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=8192, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2, **small)
    torch.manual_seed(seed + 1)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(SMOL_GENERATION, indent=2))
    return paths


# ----------------------------------------------------------------------------------------------------------
# Real configs, no weights: what memory.py plans from (a second cache, `build_configs`)
# ----------------------------------------------------------------------------------------------------------

# The architecture numbers of each model's config.json on the Hub (public facts; the fields a config of that
# model_type needs to build the model on the meta device). tests/test_memory.py checks that each gives its
# published parameter count. The ids served with tiny weights above get their REAL config here, in another cache:
# the two caches never meet (a test points the Hub at one or the other).
QWEN_COMMON = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_act="silu", rms_norm_eps=1e-6,
                   rope_theta=1000000.0, max_position_embeddings=32768, bos_token_id=151643, eos_token_id=151645,
                   use_sliding_window=False, sliding_window=32768, attention_dropout=0.0, torch_dtype="bfloat16")
LLAMA_COMMON = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu", rms_norm_eps=1e-5,
                    attention_bias=False, mlp_bias=False, head_dim=None, torch_dtype="bfloat16")
REAL_CONFIGS = {
    QWEN: QWEN_COMMON | dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                             num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_window_layers=21),
    "Qwen/Qwen2.5-1.5B-Instruct": QWEN_COMMON | dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                                     num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                                     tie_word_embeddings=True, max_window_layers=21),
    "Qwen/Qwen2.5-3B-Instruct": QWEN_COMMON | dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                                   num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                                                   tie_word_embeddings=True, max_window_layers=70),
    "Qwen/Qwen2.5-7B-Instruct": QWEN_COMMON | dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                                   num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                                   tie_word_embeddings=False, max_window_layers=28),
    "Qwen/Qwen2.5-14B-Instruct": QWEN_COMMON | dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                                                    num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                                                    tie_word_embeddings=False, max_window_layers=70, rms_norm_eps=1e-5),
    "meta-llama/Llama-3.1-8B-Instruct": LLAMA_COMMON | dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=131072,
        rope_theta=500000.0, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192)),
    SMOL: LLAMA_COMMON | dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                              num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True,
                              max_position_embeddings=8192, rope_theta=100000.0, bos_token_id=1, eos_token_id=2,
                              pad_token_id=2),
}
# Published sizes: the "Model size" each model page of the Hub shows (from its safetensors), 3 significant digits.
PUBLISHED_PARAMS = {QWEN: 0.494e9, "Qwen/Qwen2.5-1.5B-Instruct": 1.54e9, "Qwen/Qwen2.5-3B-Instruct": 3.09e9,
                    "Qwen/Qwen2.5-7B-Instruct": 7.62e9, "Qwen/Qwen2.5-14B-Instruct": 14.8e9,
                    "meta-llama/Llama-3.1-8B-Instruct": 8.03e9, SMOL: 0.362e9}


def build_configs(home: Path) -> dict[str, Path]:
    """A Hugging Face cache at `home` holding only config.json of every REAL_CONFIGS id (no weights, no tokenizer):
    enough for memory.plan, which downloads nothing else."""
    paths = {}
    for repo, config in REAL_CONFIGS.items():
        path = paths[repo] = snapshot(home / "hub", "model", repo)
        (path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}, indent=2))
    return paths


# ----------------------------------------------------------------------------------------------------------
# Benchmarks: local rows → the Hub's field names and files
# ----------------------------------------------------------------------------------------------------------

def read_local(data_dir: Path, relative: str) -> list[dict]:
    path = data_dir / relative
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def choose_rows(data_dir: Path, n: int = 3) -> dict[str, list[dict]]:
    """benchmark (or "gsm8k:train", "math:train") → the local rows the fake Hub serves, in order."""
    import data

    rows = {}
    for name, relative in data.LOCAL.items():
        for split in ("test", "train") if "{split}" in relative else ("test",):
            local = read_local(data_dir, relative.format(split=split))
            key = name if split == "test" else f"{name}:{split}"
            if name.startswith("mbpp"):            # the Hub's test split holds the test task ids only
                local = [r for r in local if int(r["task_id"]) in data.MBPP_TEST_IDS]
            rows[key] = local[:n]
    # MATH's test split: n rows that are not in MATH-500, then the first two MATH-500 problems (found by unique_id
    # in the local MATH file), which the validation set for γ must leave out.
    math500 = read_local(data_dir, "math500/test.jsonl")[:n]
    rows["math500"] = math500
    math = read_local(data_dir, "math/test.jsonl")
    held = {r["unique_id"] for r in math500}
    rows["math"] = [r for r in math if r["unique_id"] not in held][:n] + \
        [next(r for r in math if r["unique_id"] == m["unique_id"]) for m in math500[:2]]
    # OlympiadBench: add the row whose one final_answer string holds two answers ('$69$,$84$').
    olympiad = read_local(data_dir, "olympiadbench/test.jsonl")
    rows["olympiadbench"] += [next(r for r in olympiad if r["final_answer"] == ["$69$,$84$"])]
    return rows


def hub_rows(key: str, rows: list[dict]) -> list[dict]:
    """The local rows of `key`, with the fields of its Hub dataset (data.HUB's comment says which, from which card)."""
    import data

    name = key.split(":")[0]
    if name == "gsm8k":
        return [{"question": r["question"], "answer": r["answer"]} for r in rows]
    if name == "math":              # MATH-lighteval: no unique_id
        return [{"problem": r["problem"], "level": r["level"], "solution": r["solution"], "type": r["type"]}
                for r in rows]
    if name == "math500":
        return [dict(r) for r in rows]
    if name == "aime24":            # HuggingFaceH4/aime_2024: no `question` copy, a `year`
        return [{"id": r["id"], "problem": r["problem"], "solution": r["solution"], "answer": r["answer"],
                 "url": r["url"], "year": "2024"} for r in rows]
    if name == "aime25":
        return [{"problem": r["problem"], "answer": r["answer"], "id": str(i)} for i, r in enumerate(rows)]
    if name == "amc23":
        return [{"id": r["id"], "question": r["question"], "answer": r["answer"], "url": r["url"]} for r in rows]
    if name == "minerva_math":      # math-ai/minervamath: the question and its boxed answer, nothing else
        return [{"question": r["problem"], "answer": data.last_boxed(r["solution"])} for r in rows]
    if name == "olympiadbench":
        return [{**r, "image_1": None, "language": "English", "modality": "Text-only", "subject": "Math",
                 "question_type": "Open-ended", "difficulty": "Competition"} for r in rows]
    if name == "mbpp":
        return [{k: r[k] for k in ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")}
                for r in rows]
    if name == "mbpp_sanitized":
        return [{k: r[k] for k in ("source_file", "task_id", "prompt", "code", "test_imports", "test_list")}
                for r in rows]
    raise KeyError(key)


def configs_yaml(configs: dict[str, dict[str, str]]) -> str:
    """A dataset card's YAML header: config → {split: file pattern}."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {pattern}" for split, pattern in splits.items()]
    return "\n".join(lines + ["---", "", "Fake card for the tests (tests/fakehub.py).", ""])


# (repo, config or None) → {split: (file in the repository, source key of choose_rows)}. File names are those of
# the Hub repositories where the search found them (gsm8k, mbpp, amc23, aime25, minervamath, MATH-500's test.jsonl,
# aime_2024's data/train-*); MATH-lighteval's data/ and OlympiadBench's folder are the usual parquet layout.
FILES = {
    ("openai/gsm8k", "main"): {"test": ("main/test-00000-of-00001.parquet", "gsm8k"),
                               "train": ("main/train-00000-of-00001.parquet", "gsm8k:train")},
    ("DigitalLearningGmbH/MATH-lighteval", "default"): {"test": ("data/test-00000-of-00001.parquet", "math"),
                                                        "train": ("data/train-00000-of-00001.parquet", "math:train")},
    ("HuggingFaceH4/MATH-500", None): {"test": ("test.jsonl", "math500")},
    ("HuggingFaceH4/aime_2024", "default"): {"train": ("data/train-00000-of-00001.parquet", "aime24")},
    ("math-ai/aime25", "default"): {"test": ("test.jsonl", "aime25")},
    ("math-ai/amc23", "default"): {"test": ("test-00000-of-00001.parquet", "amc23")},
    ("math-ai/minervamath", "default"): {"test": ("test.jsonl", "minerva_math")},
    ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP"): {
        "train": ("OlympiadBench/OE_TO_maths_en_COMP/OE_TO_maths_en_COMP.parquet", "olympiadbench")},
    ("google-research-datasets/mbpp", "full"): {"test": ("full/test-00000-of-00001.parquet", "mbpp")},
    ("google-research-datasets/mbpp", "sanitized"): {"test": ("sanitized/test-00000-of-00001.parquet",
                                                              "mbpp_sanitized")},
}


def write_file(path: Path, rows: list[dict]):
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:  # parquet written by datasets (as push_to_hub writes it: Arrow schema + HF features metadata)
        datasets.Dataset.from_list(rows).to_parquet(str(path))


def prepare_dataset(repo: str, configs, snap: Path, cache_dir: Path):
    """Write the prepared Arrow cache of `repo`'s configs from its snapshot, as an online first load does:
    cache_dir/<owner>___<name>/<config>/0.0.0/<revision>/{<name>-<split>.arrow, dataset_info.json}."""
    import shutil

    import datasets
    from datasets import load
    from datasets.naming import camelcase_to_snakecase

    name = camelcase_to_snakecase(repo.split("/")[-1])
    local = load.LocalDatasetModuleFactory(str(snap)).get_module()         # README configs + data files
    # The Hub module's arguments, with the revision as the cache hash. Without repo_id (the builder checks that
    # data files are hf:// URLs of the repository), so it writes <name>/...; moved to <owner>___<name>/ below.
    def module(*args, **kwargs):  # a new one per call: load_dataset_builder pops from its builder_kwargs
        return load.DatasetModule(local.module_path, revision(repo), {"base_path": str(snap), "dataset_name": name},
                                  dataset_infos=local.dataset_infos,
                                  builder_configs_parameters=local.builder_configs_parameters)

    staging = cache_dir.parent / "staging" / repo.replace("/", "--")
    original = load.dataset_module_factory
    load.dataset_module_factory = module
    try:
        for config in configs:
            datasets.load_dataset_builder(repo, config, cache_dir=str(staging)).download_and_prepare()
    finally:
        load.dataset_module_factory = original
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(staging / name, cache_dir / f"{repo.split('/')[0]}___{name}")


def build_datasets(hub_cache: Path, datasets_cache: Path, rows: dict[str, list[dict]]):
    by_repo: dict[str, dict] = {}
    for (repo, config), splits in FILES.items():
        by_repo.setdefault(repo, {})[config] = splits
    for repo, configs in by_repo.items():
        snap = snapshot(hub_cache, "dataset", repo)
        for splits in configs.values():
            for file, key in splits.values():
                write_file(snap / file, hub_rows(key, rows[key]))
        card = {c: {s: f for s, (f, _) in splits.items()} for c, splits in configs.items() if c is not None}
        (snap / "README.md").write_text(configs_yaml(card) if card else "Fake card (files named by split).\n")
        prepare_dataset(repo, list(configs), snap, datasets_cache)


# ----------------------------------------------------------------------------------------------------------
# The whole cache, and the environment that points at it
# ----------------------------------------------------------------------------------------------------------

@dataclass
class FakeHub:
    home: Path                                  # HF_HOME
    models: dict[str, Path]                     # Hub id → snapshot folder
    rows: dict[str, list[dict]]                 # benchmark (or "gsm8k:train", "math:train") → local rows served
    env: dict[str, str] = field(default_factory=dict)  # for subprocesses: os.environ + these

    def local_records(self, key: str, data_dir: Path) -> list[dict]:
        """The records the local converter makes of the rows the fake Hub serves for `key`, in the same order."""
        import data

        name = key.split(":")[0]
        return [data.CONVERTERS[name](row, f"{data_dir}:{name}", i) for i, row in enumerate(self.rows[key])]


def environment(home: Path) -> dict[str, str]:
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def point_hub_at(patch, home: Path) -> None:
    """Make this process read the Hub cache at `home`, offline, through `patch` (a pytest.MonkeyPatch): the
    environment, and the constants huggingface_hub read once at import (the loaded copies)."""
    import huggingface_hub.constants as hub_constants

    for key, value in environment(home).items():
        patch.setenv(key, value)
    patch.setattr(hub_constants, "HF_HOME", str(home))
    patch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    patch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def build(home: Path, data_dir: Path, tokenizer_dir: Path) -> FakeHub:
    rows = choose_rows(data_dir)
    models = build_models(home / "hub", tokenizer_dir)
    build_datasets(home / "hub", home / "datasets", rows)
    return FakeHub(home=home, models=models, rows=rows, env={**os.environ, **environment(home)})
