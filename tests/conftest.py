"""Shared fixtures: the benchmark folder beside the repository, a tiny random model, and a fake Hugging Face Hub
(tests/fakehub.py: the gpu-small model ids and every benchmark, offline), all session-wide."""
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ILR_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"benchmark files not found at {SHARED_DATA} (set ILR_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer): a 2-layer random Llama with the real SmolLM2 tokenizer."""
    import llm
    return llm.tiny_model(seed=0)


@pytest.fixture(scope="session")
def fake_hub(data_dir, tmp_path_factory):
    """A Hugging Face cache in a temp dir (tests/fakehub.py): tiny models under the real ids of the gpu-small pair
    and a few rows of each benchmark laid out as the Hub serves them. For the rest of the session this process is
    offline and reads only that cache (HF_HOME, HF_HUB_OFFLINE=1, ...); `fake_hub.env` is the environment for a
    subprocess. Skipped when the benchmark files are missing (they are what the fake rows are made of)."""
    import datasets

    import llm
    from fakehub import build, point_hub_at

    home = tmp_path_factory.mktemp("hf-home")
    patch = pytest.MonkeyPatch()
    point_hub_at(patch, home)
    # datasets too read these once, at import; point its loaded copies at the fake cache
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    patch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    try:
        yield build(home, data_dir, llm._embedded_dir())
    finally:
        patch.undo()
