# `make train`: set up .venv and train the default config's small ViT on the offline digits data.
# `make test`:  set up .venv with the torch/timm extra and run the whole test suite.
# `make lint`:  ruff with the rule set in pyproject.toml (CI runs it before the tests).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/digits

.PHONY: train test lint venv venv-test clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PY) -m pip install -q -e '.[torch,test]'
	touch $@

venv: $(VENV)/.core
venv-test: $(VENV)/.test

train: $(VENV)/.core
	$(PY) main.py --config=configs/default.py --workdir=$(WORKDIR)

test: $(VENV)/.test
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=25

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .jax_cache runs
