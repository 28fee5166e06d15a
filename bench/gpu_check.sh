#!/usr/bin/env bash
# The first thing to run on a CUDA GPU: 2 ILR steps of the embedded SmolLM2-135M pair with --bf16; prints step
# time and peak GPU memory, checks the loss is finite and the weights moved (bench/gpu_check.py says how).
# Exits non-zero with one line otherwise. Any ilr.py flag can follow, e.g. --fp16 on a T4, --device cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/gpu_check.py "$@"
