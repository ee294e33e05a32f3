# Thin wrappers around `python -m scripts <step>`; each target depends on what it needs,
# so `make export` on a fresh clone installs, trains and exports.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SPEC ?= models.yaml
MODEL ?=
STEP_ARGS := --spec $(SPEC) $(if $(MODEL),--model $(MODEL))
# FORCE=1 rebuilds a built version from changed inputs (refused otherwise: bump the version)
BUILD_ARGS := $(STEP_ARGS) $(if $(FORCE),--force)
STAMP := $(VENV)/.installed
# The kserve SDK lives apart (its protobuf >= 6 clashes with tritonclient's): manifests only.
KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed

RUNTIME ?= all
TRITON_BACKEND ?= python

.PHONY: install train export archive triton-repo kserve sign verify verify-artifacts serve serve-torchserve serve-triton rollout rollback versions drill perf bench tune stop test test-unit clean
.DEFAULT_GOAL := help

help:
	@echo "make install | train | export | archive | triton-repo | serve | stop | verify | verify-artifacts"
	@echo "     rollout MODEL= VERSION= | rollback MODEL= | versions | kserve | sign | perf | bench | tune | test | clean"
	@echo "   SPEC=models.yaml MODEL=name RUNTIME=all|torchserve|triton TRITON_BACKEND=python|onnxruntime|pytorch"

# The venv is rebuilt only when the pinned dependencies change; the system check is cheap.
install: $(STAMP) $(KSERVE_STAMP)
	@bash scripts/ensure_system_deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[test]'
	@touch $@

$(KSERVE_STAMP): pyproject.toml
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KSERVE_VENV)/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["kserve"]))' > $(KSERVE_VENV)/requirements.txt
	$(KSERVE_VENV)/bin/python -m pip install --quiet -r $(KSERVE_VENV)/requirements.txt
	@touch $@

train: install
	$(PY) -m scripts train $(BUILD_ARGS)

export: train
	$(PY) -m scripts export $(BUILD_ARGS)

archive: export
	$(PY) -m scripts archive $(BUILD_ARGS)

# TRITON_BACKEND=onnxruntime|pytorch generates for NVIDIA's containers (checked offline here).
triton-repo: export
	$(PY) -m scripts triton-repo $(BUILD_ARGS) --backend $(TRITON_BACKEND)

# The main command: build whatever is missing, start the runtime(s), wait until READY.
# (serve always generates the Python-backend repository: the native backends do not run here.)
serve: archive
	$(PY) -m scripts serve $(STEP_ARGS) --runtime $(RUNTIME)

serve-torchserve:
	$(MAKE) serve RUNTIME=torchserve

serve-triton:
	$(MAKE) serve RUNTIME=triton

# Versions against `make serve`'s servers (RUNTIME=all|torchserve|triton): load beside, gate, switch.
rollout: install
	$(PY) -m scripts rollout --spec $(SPEC) --model $(MODEL) --version $(VERSION) --runtime $(RUNTIME)

rollback: install
	$(PY) -m scripts rollback --spec $(SPEC) --model $(MODEL) --runtime $(RUNTIME)

versions: install
	$(PY) -m scripts versions --spec $(SPEC)

# A rollout and a rollback under load on the running servers, every answer checked (MODEL=digits_cnn VERSION=2).
drill: install
	$(PY) -m scripts drill --spec $(SPEC) --model $(or $(MODEL),digits_cnn) --version $(or $(VERSION),2)

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

# KServe: build/kserve/{torchserve,triton}/ + InferenceService manifests (TRITON_BACKEND=onnxruntime|pytorch|python).
kserve: archive
	$(PY) -m scripts kserve $(STEP_ARGS) --runtime $(RUNTIME) $(if $(filter command line,$(origin TRITON_BACKEND)),--triton-backend $(TRITON_BACKEND))

# Sign every artifact with TORCHSHIP_SIGNING_KEY (OpenSSF model-signing); serve/verify-artifacts
# then refuse anything unsigned or tampered when TORCHSHIP_SIGNING_PUBLIC_KEY is set.
sign: archive triton-repo
	$(PY) -m scripts sign $(STEP_ARGS)

verify-artifacts: archive
	$(PY) -m scripts verify-artifacts $(STEP_ARGS)

test: archive triton-repo
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

clean:
	rm -rf checkpoints/* artifacts/* model_store/* triton_repo/* reports/* build/
	@git checkout -- checkpoints/.gitkeep artifacts/.gitkeep model_store/.gitkeep triton_repo/.gitkeep reports/.gitkeep 2>/dev/null || true
