"""bench/gpu_check.py, the GPU smoke check, run on the CPU with the tiny model: it passes with fp32 weights (fp32
and bf16 autocast) and fails, with one line, on the bug it exists for (pure bf16 weights that do not move).
bf16 matmuls are slow on this CPU (~10 ms per lm_head call of the tiny model), so the bf16 runs are marked slow."""
import importlib.util

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

SHORT = ["--preset", "tiny", "--device", "cpu", "--max_steps", "1", "--questions_per_step", "1",
         "--num_generations", "2", "--max_completion_length", "4", "--peer_token_budget", "8"]


def test_gpu_check_passes_in_fp32_on_the_cpu(capsys):
    result = gpu_check.main(SHORT + ["--no-bf16"])                   # --bf16 is in gpu_check.DEFAULTS
    out = capsys.readouterr().out
    assert result["precision"] == "fp32" and result["device"] == "cpu" and result["peak_gb"] is None
    assert min(result["moved"]) > 0.9                                # every weight moved
    assert "[gpu-check] step 1:" in out and "peak GPU memory: n/a" in out and "[gpu-check] OK" in out


@pytest.mark.slow
def test_gpu_check_passes_with_bf16_mixed_precision_on_the_cpu(capsys):
    result = gpu_check.main(SHORT)
    out = capsys.readouterr().out
    assert result["precision"] == "bf16" and result["device"] == "cpu" and result["peak_gb"] is None
    assert min(result["moved"]) > 0.9                                # fp32 masters: every weight moved
    assert "[gpu-check] step 1:" in out and "peak GPU memory: n/a" in out and "[gpu-check] OK" in out


@pytest.mark.slow
def test_gpu_check_fails_in_one_line_when_the_weights_do_not_move():
    with pytest.raises(SystemExit, match=r"^gpu-check: FAILED: only \d+\.\d % of an agent's weights changed"):
        gpu_check.main(SHORT + ["--torch_dtype", "bfloat16", "--learning_rate", "1e-6"])


def test_gpu_check_refuses_a_missing_gpu_in_one_line(monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"^gpu-check: FAILED: --device cuda: PyTorch sees no CUDA GPU"):
        gpu_check.main([])
