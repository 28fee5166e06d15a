"""Shared fixtures: the benchmark folder beside the repository and a tiny random model (session-wide)."""
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
