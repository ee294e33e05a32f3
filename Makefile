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

RUNTIME ?= all
TRITON_BACKEND ?= python

.PHONY: install train export archive triton-repo verify verify-artifacts serve serve-torchserve serve-triton perf bench tune stop test test-unit clean
.DEFAULT_GOAL := help

help:
	@echo "make install | train | export | archive | triton-repo | serve | stop | verify | verify-artifacts"
	@echo "     perf | bench | tune | test | clean"
	@echo "   SPEC=models.yaml MODEL=name RUNTIME=all|torchserve|triton TRITON_BACKEND=python|onnxruntime|pytorch"

# The venv is rebuilt only when the pinned dependencies change; the system check is cheap.
install: $(STAMP)
	@bash scripts/ensure_system_deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[test]'
	@touch $@

train: install
	$(PY) -m scripts train $(STEP_ARGS)

export: train
	$(PY) -m scripts export $(STEP_ARGS)

archive: export
	$(PY) -m scripts archive $(STEP_ARGS)

# TRITON_BACKEND=onnxruntime|pytorch generates for NVIDIA's containers (checked offline here).
triton-repo: export
	$(PY) -m scripts triton-repo $(STEP_ARGS) --backend $(TRITON_BACKEND)

# The main command: build whatever is missing, start the runtime(s), wait until READY.
# (serve always generates the Python-backend repository: the native backends do not run here.)
serve: archive
	$(PY) -m scripts serve $(STEP_ARGS) --runtime $(RUNTIME)

serve-torchserve:
	$(MAKE) serve RUNTIME=torchserve

serve-triton:
	$(MAKE) serve RUNTIME=triton

# perf_analyzer against a served model (MODEL=digits_cnn by default; <name>_ensemble works too).
perf:
	$(PY) -m scripts perf --model $(or $(MODEL),digits_cnn)

stop:
	@test -x $(PY) && $(PY) -m scripts stop --spec $(SPEC) || true

# Every served endpoint against eager PyTorch (reuses running servers, else starts them).
verify: archive triton-repo
	$(PY) -m scripts verify $(STEP_ARGS)

# Side-by-side throughput/latency: in-process limit, stock setups, this project's deployments.
bench: archive triton-repo
	$(PY) -m scripts bench $(STEP_ARGS)

# Sweep serving settings on both runtimes (MODEL=digits_cnn RUNTIME=all BUDGET=900), pick by the latency-aware rule.
tune: export
	$(PY) -m scripts tune --spec $(SPEC) --model $(or $(MODEL),digits_cnn) --runtime $(or $(RUNTIME),all) $(if $(BUDGET),--budget $(BUDGET))

verify-artifacts: archive
	$(PY) -m scripts verify-artifacts $(STEP_ARGS)

test: archive triton-repo
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

clean:
	rm -rf checkpoints/* artifacts/* model_store/* triton_repo/* reports/* build/
	@git checkout -- checkpoints/.gitkeep artifacts/.gitkeep model_store/.gitkeep triton_repo/.gitkeep reports/.gitkeep 2>/dev/null || true
