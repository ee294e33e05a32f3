"""What a runtime is: a name and six small capabilities, each a class in the runtime's folder.

`serve`, `verify`, `bench`, `tune`, `rollout` and `kserve` loop over the registered runtimes
(scripts/runtimes/registry.py) and call these; none of them names a runtime. Options travel as
dataclasses, never as widened signatures. Building is `scripts/pipeline/ensure.py`'s job:
`ServerControl.start` only starts what has been built.
"""

from __future__ import annotations


from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from handlers.plan import ServingPlan
from scripts.pipeline.layout import Layout
from scripts.spec import ModelSpec
from scripts.spec.cluster import KServeSpec

# (spec, {input: rows}) -> {output: rows}: golden tensors through one served endpoint.
TensorCall = Callable[[ModelSpec, dict[str, np.ndarray]], dict[str, np.ndarray]]
# An example request file (image bytes, text) -> the served answer of that one example: a
# classifier's {"label": str, "score": float}, any other model's {output: array}.
RequestCall = Callable[[Path], dict[str, Any]]
# a generation model's endpoint: a completion request (prompt, max_tokens, ...) in; its answer
# (text, token_ids, finish_reason; pieces: how many responses it came in; or status + error)
GenerateCall = Callable[[dict], dict]
# how long a generation client waits for the next piece: queued behind 63 others on a CPU, a
# stream's first token may take minutes (bench-generation's stock setups at 64 streams)
STREAM_TIMEOUT_S = 300


# --- values ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Translation:
    """The runtime's own settings for one model, and what it could not represent exactly."""

    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildRow:
    model: str
    status: str  # "built" / "up to date"
    detail: str  # where it went, what it holds
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildOptions:
    force: bool = False  # rebuild even when nothing changed
    backend: str = "python"  # Triton: python (runs here) | onnxruntime | pytorch
    out: Path | None = None  # another folder than the layout's (a scratch repository)


@dataclass(frozen=True)
class StartOptions:
    workdir: Path | None = None  # None: the instance `make serve` runs, under layout.run
    free_ports: bool = False  # True: loopback ports nothing uses (tests, bench)
    timeout_s: float = 300
    names: list[str] | None = None  # load only these served names
    artifacts: Path | None = None  # serve another model store / repository (bench's stock)
    config: Path | None = None  # another configuration template (bench's stock)
    managed: bool | None = None  # rollouts and faults (TorchServe's model API, Triton's
    # watchdog); None: on for `make serve`'s instance
    # Triton: leave the statistics API open. perf_analyzer reads it and sends no key over gRPC
    # (its -H is HTTP-only): only for bench's own loopback server.
    open_statistics: bool = False


@dataclass(frozen=True)
class LoadTarget:
    """One thing perf_analyzer can load: a served model on a running server."""

    model: str
    url: str
    protocol: str  # http | grpc
    service_kind: str  # perf_analyzer's --service-kind
    data: Path  # perf_analyzer --input-data
    token: str | None = None  # TorchServe's inference key
    headers: tuple[tuple[str, str], ...] = ()  # more HTTP headers (Triton's admin key)


@dataclass(frozen=True)
class Setup:
    """One deployment `make bench` measures: a runtime's stock setup, this project's, or this
    project's serving the gated int8 ONNX."""

    key: str  # in the report: <runtime>, <runtime>_stock, <runtime>_int8
    label: str
    runtime: str
    stock: bool
    protocols: tuple[str, ...]
    int8: bool = False


@dataclass(frozen=True)
class GenerationDeployment:
    """A generation model served by this project and by the runtime's stock setup, side by side
    in one server."""

    calls: dict[str, GenerateCall]  # {setup key: its streamed endpoint}
    ready_s: float  # start-up until both were READY


def stock_setup_key(runtime: str) -> str:
    return f"{runtime}_stock"


def bench_setups(
    runtime: str, title: str, stock_label: str, protocols: tuple[str, ...]
) -> tuple[Setup, ...]:
    """A runtime's stock setup, this project's deployment, and that deployment serving the gated
    int8 ONNX (over HTTP)."""
    return (
        Setup(
            stock_setup_key(runtime), f"{title}, {stock_label} (stock)", runtime, True, protocols
        ),
        Setup(runtime, f"{title}, this project", runtime, False, protocols),
        Setup(
            f"{runtime}_int8", f"{title}, this project, int8 ONNX", runtime, False, ("http",), True
        ),
    )


@dataclass(frozen=True)
class StockBar:
    """The throughput a runtime's deployment must reach against its stock setup (digits_cnn at
    concurrency 16), and that setup in words."""

    ratio: float
    stock_words: str


@dataclass(frozen=True)
class KServeBundle:
    """One runtime's storage tree for KServe, and what its InferenceService needs to know."""

    runtime: str
    tree: Path  # upload this folder as the storageUri
    model_format: str  # predictor.model.modelFormat.name
    runtime_version: str  # the serving image's tag, pinned to what is tested here
    protocol: str  # predictor.model.protocolVersion
    models: list[str]  # the served names inside
    metrics_port: int  # where the pod's Prometheus metrics are (/metrics), for the scrape
    args: tuple[str, ...] = ()  # more server arguments (may name $(VAR) of secret_env)
    secret_env: tuple[str, ...] = ()  # variables from the service's Secret (key: lower-case name)


@dataclass(frozen=True)
class ServedVersions:
    """A model's versions on a running server: those loaded, and the one unversioned requests
    get."""

    loaded: list[int]
    default: int | None


class Server(Protocol):
    """A running server's typed handle."""

    workdir: Path  # its run state: pid, config, keys, logs
    waited_s: float  # seconds start-up took until READY
    metrics_address: str  # host:port of its Prometheus /metrics, what a scrape job targets


# --- capabilities ----------------------------------------------------------------------------
class ArtifactBuilder(Protocol):
    def translate(self, plan: ServingPlan) -> Translation:
        """Batching, workers/instances and timeouts in this runtime's terms."""

    def build(
        self, specs: list[ModelSpec], layout: Layout, options: BuildOptions
    ) -> list[BuildRow]:
        """Write this runtime's artifact for these models (incremental)."""

    def build_version(self, spec: ModelSpec, version: int, layout: Layout) -> BuildRow:
        """Write one more version of the model beside the others (immutable once built)."""

    def served_names(self, spec: ModelSpec) -> list[str]:
        """The names this runtime serves the model under (tensor model first)."""

    def served_format(self, spec: ModelSpec, layout: Layout) -> str:
        """The exported format this runtime runs for the model."""

    def signed_artifacts(self, specs: list[ModelSpec], layout: Layout) -> list[Path]:
        """The built files or folders that serve these models (what is signed)."""


class ServerControl(Protocol):
    def start(self, specs: list[ModelSpec], layout: Layout, options: StartOptions) -> Server:
        """Start a server on what is built; wait until every model is READY (stopped again on
        failure; ModelsFailed carries it when only some models failed)."""

    def running(self, layout: Layout) -> Server | None:
        """The instance `make serve` started, if it runs."""

    def stop(self, workdir: Path) -> bool:
        """Stop the instance that runs from workdir (never another one); True if one ran."""

    def endpoints_report(self, server: Server, layout: Layout) -> list[tuple[str, str]]:
        """(label, where) lines that `make serve` prints once READY."""


class Endpoints(Protocol):
    def tensor_endpoints(self, server: Server) -> dict[str, TensorCall]:
        """Named endpoints that take model-input tensors (REST, gRPC, ...)."""

    def request_endpoints(self, server: Server, spec: ModelSpec) -> dict[str, RequestCall]:
        """Named endpoints that take what a client sends (image bytes, text, rows)."""

    def version_endpoints(
        self, server: Server, spec: ModelSpec, version: int
    ) -> dict[str, TensorCall]:
        """Tensor endpoints that reach exactly this version (loaded beside or serving)."""

    def generation_endpoints(
        self, server: Server, spec: ModelSpec, version: int | None = None
    ) -> dict[str, GenerateCall]:
        """A generation model's endpoints, streamed and whole; `version`: ones that reach
        exactly that version (loaded beside or serving)."""


class VersionControl(Protocol):
    def versions(self, server: Server, spec: ModelSpec) -> ServedVersions:
        """The model's versions as the server has them now."""

    def rollout_problems(self, server: Server, spec: ModelSpec) -> list[str]:
        """Why versions cannot be loaded on this server (before anything is built)."""

    def load_beside(self, server: Server, spec: ModelSpec, version: int, layout: Layout) -> bool:
        """Load a version next to the serving one; unversioned requests keep the serving one.
        False when it was loaded already."""

    def make_default(
        self, server: Server, spec: ModelSpec, version: int, keep: int | None, layout: Layout
    ) -> None:
        """Send unversioned requests to `version`, keeping `keep` loaded for a rollback."""

    def unload(self, server: Server, spec: ModelSpec, version: int, layout: Layout) -> None:
        """Retire a version that is not the default (call once it has nothing in flight)."""

    def requests_served(self, server: Server, spec: ModelSpec, version: int) -> float:
        """The server's count of requests this version finished: unchanged between two reads,
        the version has drained."""


DeploymentTargets = list[tuple[str, str, str, LoadTarget]]  # (model, setup, protocol, target)


class BenchSetup(Protocol):
    setups: tuple[Setup, ...]  # stock, this project's, int8
    stock_bar: StockBar
    packages: tuple[str, ...]  # whose versions the report records

    def load_target(
        self, server: Server, spec: ModelSpec, layout: Layout, workdir: Path
    ) -> LoadTarget:
        """perf_analyzer's target for the model's tensor endpoint on a running server, with
        golden samples as request data written under workdir."""

    def deployment(
        self, specs: list[ModelSpec], layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> AbstractContextManager[DeploymentTargets]:
        """This project's deployment and the runtime's stock setup side by side on free ports;
        stopped on exit."""

    def generation_deployment(
        self, spec: ModelSpec, layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> AbstractContextManager[GenerationDeployment]:
        """A generation model as built beside the stock generate() setup, on free ports;
        stopped on exit."""


class KServeBundler(Protocol):
    def bundle(
        self, specs: list[ModelSpec], layout: Layout, out: Path, settings: KServeSpec
    ) -> KServeBundle:
        """Write the storage tree KServe's runtime for this server starts from (under `out`)."""


@dataclass(frozen=True)
class Runtime:
    name: str  # as on the command line: RUNTIME=<name>
    title: str  # as printed
    build_step: str  # its make target / step name: `archive`, `triton-repo`
    replicas: str  # the spec's serving field it scales by: workers / instances
    artifacts: ArtifactBuilder
    server: ServerControl
    endpoints: Endpoints
    versions: VersionControl
    bench: BenchSetup
    kserve: KServeBundler
