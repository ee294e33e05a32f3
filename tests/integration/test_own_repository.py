"""The tool used from a user's own repository: a folder outside this checkout with its own
`models/` package (the same name as the examples' package), its own checkpoint and no
config.properties, served and verified on both runtimes by the README's commands with SPEC=."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import LAYOUT, REPO

pytestmark = pytest.mark.integration

MODULE = '''
import torch
from torch import nn


class Scorer(nn.Module):
    """Not one of the examples: two inputs, one of them int64, a sigmoid score per row."""

    def __init__(self, features: int = 6, buckets: int = 5):
        super().__init__()
        self.embed = nn.Embedding(buckets, 3)
        self.head = nn.Linear(features + 3, 1)

    def forward(self, x: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(torch.cat([x, self.embed(bucket)], dim=1)))
'''

SPEC = """
models:
  - name: own_scorer
    version: 1
    source:
      module: models.scorer:Scorer
      checkpoint: weights/scorer.pt
    inputs:
      - {name: x, dtype: float32, shape: [-1, 6]}
      - {name: bucket, dtype: int64, shape: [-1], range: [0, 4]}
    outputs:
      - {name: score, dtype: float32, shape: [-1, 1]}
    task: {kind: regression}
    batching: {max_batch_size: 4}
    export: {formats: [torchscript, onnx]}
"""
PORTS = (8080, 8081, 8082, 7070, 7071, 8000, 8001, 8002)  # `make serve`'s defaults


def user_repository(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "scorer.py").write_text(textwrap.dedent(MODULE))
    (folder / "weights").mkdir()
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_scorer", folder / "models" / "scorer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(3)
    torch.save(module.Scorer().state_dict(), folder / "weights" / "scorer.pt")
    (folder / "models.yaml").write_text(textwrap.dedent(SPEC))
    return folder / "models.yaml"


def busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_model_in_its_own_repository_is_served_and_verified_on_both_runtimes(tmp_path):
    taken = [p for p in PORTS if busy(p)]
    assert not taken, f"`make serve`'s ports {taken} are in use: stop what runs there (`make stop`)"
    spec = user_repository(tmp_path / "their-repo")
    served = make("serve", f"SPEC={spec}")
    try:
        assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
        assert "TorchServe READY" in served.stdout and "tritonserver READY" in served.stdout
        # run state beside their spec (`torchserve --stop` deletes the key file again)
        assert (spec.parent / ".torchship" / "torchserve" / "key_file.json").exists()
        verified = make("verify", f"SPEC={spec}")
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    finally:
        stopped = make("stop", f"SPEC={spec}")
    assert "TorchServe stopped" in stopped.stdout and "tritonserver stopped" in stopped.stdout
    out = spec.parent
    report = json.loads((out / "reports" / "verify.json").read_text())
    endpoints = {c["endpoint"] for c in report["checks"]}
    assert {"torchserve-rest", "torchserve-grpc", "triton-http", "triton-grpc"} <= endpoints
    assert all(c["passed"] for c in report["checks"]), report
    # everything generated went beside their spec, nothing into this checkout or their models/
    assert (out / "model_store" / "own_scorer.mar").exists()
    assert (out / "triton_repo" / "own_scorer" / "config.pbtxt").exists()
    assert not (LAYOUT.artifacts / "own_scorer").exists()
    assert sorted(p.name for p in (out / "models").iterdir() if p.suffix == ".py") == [
        "__init__.py",
        "scorer.py",
    ]
