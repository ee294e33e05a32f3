"""The TorchServe runtime: `.mar` archives in the model store, a TorchServe started on them, REST
and gRPC endpoints for `make verify`, versions through the management API, the stock BaseHandler
setup for `make bench`, and KServe's TorchServe layout."""

from __future__ import annotations

from scripts.runtimes.protocols import Runtime
from scripts.runtimes.torchserve.artifacts import TorchServeArtifacts
from scripts.runtimes.torchserve.bench import TorchServeBench
from scripts.runtimes.torchserve.control import TorchServeControl
from scripts.runtimes.torchserve.endpoints import TorchServeEndpoints
from scripts.runtimes.torchserve.kserve import TorchServeKServe
from scripts.runtimes.torchserve.server import TorchServe
from scripts.runtimes.torchserve.settings import NAME
from scripts.runtimes.torchserve.versions import TorchServeVersions

_control = TorchServeControl()

# every capability takes this runtime's own server: the type checker holds them to it
TORCHSERVE: Runtime[TorchServe] = Runtime(
    name=NAME,
    title="TorchServe",
    build_step="archive",
    replicas="workers",
    artifacts=TorchServeArtifacts(),
    server=_control,
    endpoints=TorchServeEndpoints(),
    versions=TorchServeVersions(),
    bench=TorchServeBench(_control),
    kserve=TorchServeKServe(),
)
