"""The Triton runtime: the model repository, the tritonserver that the nvidia-pytriton wheel
carries started on it, HTTP and gRPC endpoints for `make verify`, versions through the
repository API, the per-request Python-backend setup for `make bench`, and KServe's layout."""

from __future__ import annotations

from scripts.runtimes.protocols import Runtime
from scripts.runtimes.triton.artifacts import TritonArtifacts
from scripts.runtimes.triton.bench import TritonBench
from scripts.runtimes.triton.control import TritonControl
from scripts.runtimes.triton.endpoints import TritonEndpoints
from scripts.runtimes.triton.kserve import TritonKServe
from scripts.runtimes.triton.server import Triton
from scripts.runtimes.triton.settings import NAME
from scripts.runtimes.triton.versions import TritonVersions

_control = TritonControl()

# every capability takes this runtime's own server: the type checker holds them to it
TRITON: Runtime[Triton] = Runtime(
    name=NAME,
    title="tritonserver",
    build_step="triton-repo",
    replicas="instances",
    artifacts=TritonArtifacts(),
    server=_control,
    endpoints=TritonEndpoints(),
    versions=TritonVersions(),
    bench=TritonBench(_control),
    kserve=TritonKServe(),
)
