"""Shared fixtures: small specs written into a temporary folder (no training needed)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from scripts.pipeline.layout import Layout

REPO = Path(__file__).resolve().parents[1]
LAYOUT = Layout.of(REPO)  # the examples' layout: outputs in this checkout

TINY_ENTRY = """
  - name: {name}
    version: 1
    source:
      module: models.tabular:TabularMLP
      checkpoint: weights/{name}.pt
      kwargs: {{in_features: 30, hidden: 16}}
    inputs:
      - {{name: features, dtype: float32, shape: [-1, 30]}}
    outputs:
      - {{name: probability, dtype: float32, shape: [-1, 1]}}
    task:
      kind: classification
      labels: labels.txt
      output: probabilities
    batching: {{max_batch_size: 8}}
    export: {{formats: [{formats}]}}
"""


def write_spec(folder: Path, entries: str) -> Path:
    path = folder / "models.yaml"
    path.write_text("models:\n" + textwrap.dedent(entries))
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    """A one-model spec with a randomly initialised checkpoint: valid, exportable, no training."""
    from models.tabular import TabularMLP

    torch.manual_seed(0)
    (tmp_path / "weights").mkdir()
    torch.save(TabularMLP(30, 16).state_dict(), tmp_path / "weights" / "tiny.pt")
    (tmp_path / "labels.txt").write_text("malignant\nbenign\n")
    return write_spec(tmp_path, TINY_ENTRY.format(name="tiny", formats="torchscript, onnx"))


@pytest.fixture
def repo_root() -> Path:
    return REPO


def copy_spec(src: Path, dst_folder: Path) -> Path:
    shutil.copytree(src.parent, dst_folder, dirs_exist_ok=True)
    return dst_folder / src.name


ZOO_SPEC = REPO / "models" / "zoo.yaml"


def _examples():
    from scripts.spec import load_spec

    return load_spec(REPO / "models.yaml").models


EXAMPLES = _examples()
# the examples answered in one pass; review_gpt (generation) has tests of its own
TENSOR_EXAMPLES = [m for m in EXAMPLES if m.task.generation is None]
# What a scratch copy of this checkout must not share: what the build writes there.
GENERATED = {
    "artifacts",
    "model_store",
    "triton_repo",
    "reports",
    "kserve",
    ".torchship",
    ".git",
    ".venv",
    ".venv-kserve",
}


def scratch_checkout(folder: Path) -> Layout:
    """A copy of this checkout where a test may change the spec and build freely: links to
    everything but the generated folders; returns its layout."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        link = folder / entry.name
        if entry.name not in GENERATED and not link.exists():
            link.symlink_to(entry)
    return Layout.of(folder)


def build_spec(path: Path, names: list[str] | None = None) -> list:
    """A spec's models (or those named) built for every runtime through the one build path
    (incremental: seconds when `make` built them), so tests that read their artifacts pass on a
    fresh clone too."""
    from scripts.pipeline.ensure import ensure_built
    from scripts.runtimes.registry import RUNTIMES
    from scripts.spec import load_spec

    models = load_spec(path).select(names)
    ensure_built(models, LAYOUT, list(RUNTIMES.values()))
    return models


@pytest.fixture(scope="session")
def built_examples():
    """The example models of models.yaml, built: request it where a test reads their artifacts."""
    return build_spec(REPO / "models.yaml")


@pytest.fixture(scope="session")
def built_zoo():
    """built_zoo(name) builds just that conformance-zoo entry and returns its spec."""
    return lambda name: build_spec(ZOO_SPEC, [name])[0]


# A tiny generation model given as module + checkpoint + tokenizer.json (write_tiny_lm makes the
# two files under <folder>/weights/).
TINY_LM_CONFIG = {"vocab_size": 300, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4}
TINY_LM_ENTRY = """
  - name: own_lm
    source:
      module: models.review_gpt:ReviewGPT
      checkpoint: weights/lm.pt
      tokenizer: weights/tokenizer.json
      kwargs: {kwargs}
    task: {{kind: generation, generation: {{max_tokens: 6, max_tokens_limit: 16}}}}
""".format(kwargs=json.dumps({**TINY_LM_CONFIG, "eos_token_id": 0, "bos_token_id": 0}))


def write_tiny_lm(folder: Path) -> None:
    from models.review_gpt import ReviewGPT, train_tokenizer

    (folder / "weights").mkdir(exist_ok=True)
    tokenizer = train_tokenizer(["the battery lasts all day.", "this film is great."] * 30, 300)
    tokenizer.save(str(folder / "weights" / "tokenizer.json"))
    torch.manual_seed(0)
    torch.save(ReviewGPT(**TINY_LM_CONFIG).state_dict(), folder / "weights" / "lm.pt")
