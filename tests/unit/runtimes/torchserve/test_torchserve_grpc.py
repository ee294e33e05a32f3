"""TorchServe's gRPC stubs: compiled from the protos inside the installed model-server.jar."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

CONCURRENT_FIRST_USE = """
import concurrent.futures, sys
from pathlib import Path
from scripts.runtimes.torchserve.grpc_client import load_stubs
out = Path(sys.argv[1])
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    stubs = list(pool.map(lambda _: load_stubs(out), range(32)))
assert all(
    hasattr(s[1], "InferenceAPIsServiceStub") and hasattr(s[3], "ManagementAPIsServiceStub")
    for s in stubs
)
names = {s[0].PredictionsRequest.DESCRIPTOR.full_name for s in stubs}
assert names == {"org.pytorch.serve.grpc.inference.PredictionsRequest"}
"""


def test_stubs_compile_once_and_safely_under_concurrent_first_use(tmp_path):
    """32 clients created at once on a fresh checkout must all get complete modules."""
    result = subprocess.run(
        [sys.executable, "-c", CONCURRENT_FIRST_USE, str(tmp_path / "stubs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "stubs").glob("*_pb2*.py")) == [
        "inference_pb2.py",
        "inference_pb2_grpc.py",
        "management_pb2.py",
        "management_pb2_grpc.py",
    ]
