# Thin wrappers around `python -m scripts <step>`: each step builds what it needs through the
# one build path, so `make serve` on a fresh clone installs, trains, exports and packages.
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
# OUT=/path puts every generated folder there instead of beside the spec.
OUT ?=
CLI := $(PY) -m scripts $(if $(OUT),--out $(OUT))

.PHONY: help install check train export archive triton-repo kserve sign verify verify-artifacts serve \
	serve-torchserve serve-triton access-reload monitor rollout rollback versions drill distill prune perf bench bench-generation tune stop test test-unit \
	lint clean
.DEFAULT_GOAL := help

help:
	@echo "make install | check | train | export | archive | triton-repo | serve | access-reload | monitor | stop | verify"
	@echo "     verify-artifacts | rollout MODEL= VERSION= | rollback MODEL= | versions | drill | distill MODEL= | prune MODEL="
	@echo "     kserve | sign | perf | bench | bench-generation | tune | test | test-unit | lint | clean"
	@echo "   SPEC=models.yaml MODEL=name OUT=folder RUNTIME=all|torchserve|triton"
	@echo "   TRITON_BACKEND=python|onnxruntime|pytorch"

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

# Every step below goes through the one build path (scripts/pipeline/ensure.py): each builds
# what it needs and nothing that is up to date.
check: install
	$(CLI) check --spec $(SPEC)

train: install
	$(CLI) train $(BUILD_ARGS)

export: install
	$(CLI) export $(BUILD_ARGS)

archive: install
	$(CLI) archive $(BUILD_ARGS)

# TRITON_BACKEND=onnxruntime|pytorch generates for NVIDIA's containers (checked offline here).
triton-repo: install
	$(CLI) triton-repo $(BUILD_ARGS) --backend $(TRITON_BACKEND)

# The main command: build whatever is stale, start the runtime(s), wait until READY.
serve: install
	$(CLI) serve $(STEP_ARGS) --runtime $(RUNTIME)

# The spec's access: (keys, scopes, limits) applied to the running gateway, nothing dropped.
access-reload: install
	$(CLI) access-reload --spec $(SPEC)

serve-torchserve:
	$(MAKE) serve RUNTIME=torchserve

serve-triton:
	$(MAKE) serve RUNTIME=triton

# A target that acts on one model (version) says so instead of passing an empty option.
need = $(if $($(1)),,$(error $(2) needs $(1)=..., e.g. `make $(2) $(3)`))

# A language model's distilled versions (training.distill): trained, gated, exported (MODEL=review_gpt [STUDENT=0,2]).
distill: install
	$(call need,MODEL,distill,MODEL=review_gpt)
	$(CLI) distill --spec $(SPEC) --model $(MODEL) $(if $(STUDENT),--student $(STUDENT)) $(if $(FORCE),--force)
# Its pruned versions (training.distill with heads / mlp): MODEL=review_gpt [HEADS=0.25] [MLP=0.3].
prune: install
	$(call need,MODEL,prune,MODEL=review_gpt)
	$(CLI) prune --spec $(SPEC) --model $(MODEL) $(if $(HEADS),--heads $(HEADS)) $(if $(MLP),--mlp $(MLP)) $(if $(FORCE),--force)

# Versions against `make serve`'s servers (RUNTIME=all|torchserve|triton): load beside, gate, switch.
rollout: install
	$(call need,MODEL,rollout,MODEL=digits_cnn VERSION=2)
	$(call need,VERSION,rollout,MODEL=digits_cnn VERSION=2)
	$(CLI) rollout --spec $(SPEC) --model $(MODEL) --version $(VERSION) --runtime $(RUNTIME)

rollback: install
	$(call need,MODEL,rollback,MODEL=digits_cnn)
	$(CLI) rollback --spec $(SPEC) --model $(MODEL) --runtime $(RUNTIME)

versions: install
	$(CLI) versions --spec $(SPEC)

# A rollout and a rollback under load on the running servers, every answer checked (MODEL=digits_cnn VERSION=2).
drill: install
	$(CLI) drill --spec $(SPEC) --model $(or $(MODEL),digits_cnn) --version $(or $(VERSION),2)

# perf_analyzer against a served model (MODEL=digits_cnn by default; <name>_ensemble works too).
perf: install
	$(CLI) perf --spec $(SPEC) --model $(or $(MODEL),digits_cnn)

# Without .venv nothing was started; with it, a server that would not stop fails the target.
stop:
	@if test -x $(PY); then $(CLI) stop --spec $(SPEC); fi

# Prometheus on 127.0.0.1:9090 scraping `make serve`'s servers, with the spec's alert rules and a
# Grafana dashboard (run/prometheus/); `make stop` stops it too.
monitor: install
	$(CLI) monitor --spec $(SPEC)

# Every served endpoint against eager PyTorch (reuses running servers, else starts them).
verify: install
	$(CLI) verify $(STEP_ARGS)

# Side-by-side throughput/latency: in-process limit, stock setups, this project's deployments.
bench: install
	$(CLI) bench $(STEP_ARGS)

# A generation model's tokens/s and time to first token, streamed at 1/4/16 clients, vs generate();
# VERSIONS=1,3: those versions side by side (an int8 or distilled variant vs its original).
bench-generation: install
	$(CLI) bench-generation $(STEP_ARGS) $(if $(VERSIONS),--versions $(VERSIONS))

# Sweep serving settings on both runtimes (MODEL=digits_cnn RUNTIME=all BUDGET=900 LOAD=any|low|high), pick by the latency-aware rule.
tune: install
	$(CLI) tune --spec $(SPEC) --model $(or $(MODEL),digits_cnn) --runtime $(or $(RUNTIME),all) $(if $(BUDGET),--budget $(BUDGET)) $(if $(LOAD),--load $(LOAD))

# KServe: kserve/{torchserve,triton}/ + InferenceService manifests (TRITON_BACKEND=onnxruntime|pytorch|python).
kserve: install
	$(CLI) kserve $(STEP_ARGS) --runtime $(RUNTIME) $(if $(filter command line,$(origin TRITON_BACKEND)),--triton-backend $(TRITON_BACKEND))

# Sign every artifact with TORCHSHIP_SIGNING_KEY (OpenSSF model-signing); serve/verify-artifacts
# then refuse anything unsigned or tampered when TORCHSHIP_SIGNING_PUBLIC_KEY is set.
sign: install
	$(CLI) sign $(STEP_ARGS)

verify-artifacts: install
	$(CLI) verify-artifacts $(STEP_ARGS)

# The README's test command: lint, then every test (fixtures build what each test reads).
test: install lint
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

lint: install
	$(PY) -m ruff check scripts handlers models tests docs/examples
	$(PY) -m ruff format --check scripts handlers models tests docs/examples
	$(PY) -m pyright  # [tool.pyright] in pyproject.toml: strict for handlers/ and scripts/runtimes/, basic elsewhere

# Stops what `make serve` started first (its pid files live in the run state), then removes
# every generated folder and the checkpoints that training wrote.
clean: stop
	@if test -x $(PY); then $(CLI) clean --spec $(SPEC); \
	else rm -rf artifacts model_store triton_repo reports kserve .torchship; fi
