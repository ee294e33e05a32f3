# Thin wrappers around `python -m scripts <step>`; each target depends on what it needs,
# so `make export` on a fresh clone installs, trains and exports.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SPEC ?= models.yaml
MODEL ?=
STEP_ARGS := --spec $(SPEC) $(if $(MODEL),--model $(MODEL))
STAMP := $(VENV)/.installed

.PHONY: install train export test test-unit clean
.DEFAULT_GOAL := help

help:
	@echo "make install | train | export | test | clean   (SPEC=models.yaml MODEL=name)"

# The venv is rebuilt only when the pinned dependencies change; the system check is cheap.
install: $(STAMP)
	@bash scripts/ensure_system_deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

train: install
	$(PY) -m scripts train $(STEP_ARGS)

export: train
	$(PY) -m scripts export $(STEP_ARGS)

test: export
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

clean:
	rm -rf checkpoints/* artifacts/* model_store/* triton_repo/* reports/*
	@git checkout -- checkpoints/.gitkeep artifacts/.gitkeep model_store/.gitkeep triton_repo/.gitkeep reports/.gitkeep 2>/dev/null || true
