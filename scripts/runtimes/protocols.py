"""What a runtime is: a name, four capabilities every runtime has and two optional ones (bench,
KServe), each a class in the runtime's folder; and `Live`, a runtime bound to one of its running
servers.

`serve`, `verify`, `bench`, `tune`, `rollout` and `kserve` loop over the registered runtimes
(scripts/runtimes/registry.py) and call these; none of them names a runtime. Options travel as
dataclasses, never as widened signatures. Building is `scripts/pipeline/ensure.py`'s job:
`ServerControl.start` only starts what has been built.

Each runtime has its own server type (S): its capabilities take that type and no other, which
the type checker holds them to when they are gathered in one `Runtime[S]`. Callers keep a runtime
and its server together as a `Live`, so a server never reaches another runtime's capability.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

from handlers.plan import ServingPlan
from scripts.kserve.storage import KServeBundle
from scripts.measure.bench.deployments import (
    Deployment,
    GenerationDeployment,
    LoadTarget,
    Setup,
    StockBar,
)
from scripts.pipeline.layout import Layout
from scripts.runtimes.calls import GenerateCall, RequestCall, TensorCall
from scripts.spec import ModelSpec
from scripts.spec.cluster import KServeSpec


# --- values ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Translation:
    """The runtime's own settings for one model, and what it could not represent exactly."""

    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=lambda: list[str]())


@dataclass(frozen=True)
class BuildRow:
    model: str
    status: str  # "built" / "up to date"
    detail: str  # where it went, what it holds
    warnings: list[str] = field(default_factory=lambda: list[str]())


@dataclass(frozen=True)
class BuildOptions:
    force: bool = False  # rebuild even when nothing changed
    backend: str = "python"  # Triton: python (runs here) | onnxruntime | pytorch
    out: Path | None = None  # another folder than the layout's (a scratch repository)


@dataclass(frozen=True)
class GatewayRoute:
    """One of a runtime's HTTP routes as the gateway (scripts/gateway/) passes it on: a request
    whose path matches `pattern` (a regular expression; its named groups `model` and `version`
    say what is called) goes to `upstream` with `headers` set: the runtime's own keys, which
    never reach a client. `scope`: "model" (a client's models), "admin" (admin clients) or
    "open" (anyone, no key: health). `errors`: the shape of the gateway's own refusals on it,
    as the runtime answers its own ("torchserve", "kserve_v2")."""

    pattern: str
    upstream: str
    scope: str = "model"
    headers: dict[str, str] = field(default_factory=lambda: dict[str, str]())
    errors: str = "kserve_v2"


VIA_GATEWAY = " via gateway"  # an endpoint's name through the gateway: "<its name> via gateway"


@dataclass(frozen=True)
class GatewayPass:
    """How a client reaches the runtimes through the gateway: its https URL, a client's key, and
    the certificate to verify the gateway with."""

    url: str  # https://host:port
    key: str
    certificate: Path


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
class ServedVersions:
    """A model's versions on a running server: those loaded, and the one unversioned requests
    get."""

    loaded: list[int]
    default: int | None


class Server(Protocol):
    """A running server's typed handle (each runtime has its own class)."""

    @property
    def workdir(self) -> Path:
        """Its run state: pid, config, keys, logs."""
        ...

    @property
    def waited_s(self) -> float:
        """Seconds start-up took until READY."""
        ...

    @property
    def metrics_address(self) -> str:
        """host:port of its Prometheus /metrics, what a scrape job targets."""
        ...


S = TypeVar("S", bound=Server)  # one runtime's server class
S_contra = TypeVar("S_contra", bound=Server, contravariant=True)  # ... where it is only taken


# --- capabilities ----------------------------------------------------------------------------
class ArtifactBuilder(Protocol):
    def translate(self, plan: ServingPlan) -> Translation:
        """Batching, workers/instances and timeouts in this runtime's terms."""
        ...

    def build(
        self, specs: list[ModelSpec], layout: Layout, options: BuildOptions
    ) -> list[BuildRow]:
        """Write this runtime's artifact for these models (incremental)."""
        ...

    def build_version(self, spec: ModelSpec, version: int, layout: Layout) -> BuildRow:
        """Write one more version of the model beside the others (immutable once built)."""
        ...

    def served_names(self, spec: ModelSpec) -> list[str]:
        """The names this runtime serves the model under (tensor model first)."""
        ...

    def served_format(self, spec: ModelSpec, layout: Layout) -> str:
        """The exported format this runtime runs for the model."""
        ...

    def signed_artifacts(self, specs: list[ModelSpec], layout: Layout) -> list[Path]:
        """The built files or folders that serve these models (what is signed)."""
        ...


class ServerControl(Protocol[S]):
    def start(self, specs: list[ModelSpec], layout: Layout, options: StartOptions) -> S:
        """Start a server on what is built; wait until every model is READY (stopped again on
        failure; ModelsFailed carries it when only some models failed)."""
        ...

    def running(self, layout: Layout) -> S | None:
        """The instance `make serve` started, if it runs."""
        ...

    def stop(self, workdir: Path) -> bool:
        """Stop the instance that runs from workdir (never another one); True if one ran."""
        ...

    def endpoints_report(self, server: S, layout: Layout) -> list[tuple[str, str]]:
        """(label, where) lines that `make serve` prints once READY."""
        ...

    def gateway_routes(self, server: S, specs: list[ModelSpec]) -> list[GatewayRoute]:
        """The server's HTTP routes behind the gateway, most specific first (OpenAI's, chosen
        by the body's model, come from `openai_base`)."""
        ...

    def openai_base(self, server: S, spec: ModelSpec, version: int) -> GatewayRoute | None:
        """Where this runtime answers OpenAI's API for the model's version (the upstream's path
        ends before `/v1/...`), or None where it does not."""
        ...


class Endpoints(Protocol[S_contra]):
    def tensor_endpoints(self, server: S_contra) -> dict[str, TensorCall]:
        """Named endpoints that take model-input tensors (REST, gRPC, ...)."""
        ...

    def request_endpoints(self, server: S_contra, spec: ModelSpec) -> dict[str, RequestCall]:
        """Named endpoints that take what a client sends (image bytes, text, rows)."""
        ...

    def gateway_tensor_endpoints(
        self, server: S_contra, passage: GatewayPass
    ) -> dict[str, TensorCall]:
        """The HTTP tensor endpoints through the gateway in front of the server (named as the
        direct ones, VIA_GATEWAY after)."""
        ...

    def gateway_request_endpoints(
        self, server: S_contra, spec: ModelSpec, passage: GatewayPass
    ) -> dict[str, RequestCall]:
        """The HTTP request endpoints through the gateway in front of the server."""
        ...

    def version_endpoints(
        self, server: S_contra, spec: ModelSpec, version: int
    ) -> dict[str, TensorCall]:
        """Tensor endpoints that reach exactly this version (loaded beside or serving)."""
        ...

    def generation_endpoints(
        self, server: S_contra, spec: ModelSpec, version: int | None = None
    ) -> dict[str, GenerateCall]:
        """A generation model's endpoints, streamed and whole; `version`: ones that reach
        exactly that version (loaded beside or serving)."""
        ...


class VersionControl(Protocol[S_contra]):
    def versions(self, server: S_contra, spec: ModelSpec) -> ServedVersions:
        """The model's versions as the server has them now."""
        ...

    def rollout_problems(self, server: S_contra, spec: ModelSpec) -> list[str]:
        """Why versions cannot be loaded on this server (before anything is built)."""
        ...

    def load_beside(self, server: S_contra, spec: ModelSpec, version: int, layout: Layout) -> bool:
        """Load a version next to the serving one; unversioned requests keep the serving one.
        False when it was loaded already."""
        ...

    def make_default(
        self, server: S_contra, spec: ModelSpec, version: int, keep: int | None, layout: Layout
    ) -> None:
        """Send unversioned requests to `version`, keeping `keep` loaded for a rollback."""
        ...

    def unload(self, server: S_contra, spec: ModelSpec, version: int, layout: Layout) -> None:
        """Retire a version that is not the default (call once it has nothing in flight)."""
        ...

    def requests_served(self, server: S_contra, spec: ModelSpec, version: int) -> float:
        """The server's count of requests this version finished: unchanged between two reads,
        the version has drained."""
        ...


# --- optional capabilities -------------------------------------------------------------------
class BenchSetup(Protocol[S_contra]):
    """`make bench`, `bench-generation` and `tune`: the runtime measured beside its stock setup."""

    @property
    def setups(self) -> tuple[Setup, ...]: ...  # stock, this project's, int8

    @property
    def stock_bar(self) -> StockBar: ...

    @property
    def packages(self) -> tuple[str, ...]: ...  # whose versions the report records

    def load_target(
        self, server: S_contra, spec: ModelSpec, layout: Layout, workdir: Path
    ) -> LoadTarget:
        """perf_analyzer's target for the model's tensor endpoint on a running server, with
        golden samples as request data written under workdir."""
        ...

    def deployment(
        self, specs: list[ModelSpec], layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> AbstractContextManager[Deployment]:
        """This project's deployment and the runtime's stock setup side by side on free ports;
        stopped on exit."""
        ...

    def generation_deployment(
        self, spec: ModelSpec, layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> AbstractContextManager[GenerationDeployment]:
        """A generation model as built beside the stock generate() setup, on free ports;
        stopped on exit."""
        ...


class KServeBundler(Protocol):
    def bundle(
        self, specs: list[ModelSpec], layout: Layout, out: Path, settings: KServeSpec
    ) -> KServeBundle:
        """Write the storage tree KServe's runtime for this server starts from (under `out`)."""
        ...


@dataclass(frozen=True)
class Runtime(Generic[S]):
    name: str  # as on the command line: RUNTIME=<name>
    title: str  # as printed
    build_step: str  # its make target / step name: `archive`, `triton-repo`
    replicas: str  # the spec's serving field it scales by: workers / instances
    artifacts: ArtifactBuilder
    server: ServerControl[S]
    endpoints: Endpoints[S]
    versions: VersionControl[S]
    bench: BenchSetup[S] | None = None  # None: `make bench` and `make tune` leave it out
    kserve: KServeBundler | None = None  # None: `make kserve` has no bundle for it

    def attach(self, server: S) -> Live[S]:
        """This runtime bound to one of its running servers."""
        ...
        return Live(self, server)


@dataclass(frozen=True)
class Live(Generic[S]):
    """A runtime bound to one of its running servers: what callers do on that server (its
    endpoints, its versions, stopping it) without passing the server along each time."""

    runtime: Runtime[S]
    server: S

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def title(self) -> str:
        return self.runtime.title

    def endpoints_report(self, layout: Layout) -> list[tuple[str, str]]:
        return self.runtime.server.endpoints_report(self.server, layout)

    def stop(self) -> bool:
        return self.runtime.server.stop(self.server.workdir)

    def gateway_routes(self, specs: list[ModelSpec]) -> list[GatewayRoute]:
        return self.runtime.server.gateway_routes(self.server, specs)

    def openai_base(self, spec: ModelSpec, version: int) -> GatewayRoute | None:
        return self.runtime.server.openai_base(self.server, spec, version)

    # --- endpoints
    def tensor_endpoints(self) -> dict[str, TensorCall]:
        return self.runtime.endpoints.tensor_endpoints(self.server)

    def request_endpoints(self, spec: ModelSpec) -> dict[str, RequestCall]:
        return self.runtime.endpoints.request_endpoints(self.server, spec)

    def gateway_tensor_endpoints(self, passage: GatewayPass) -> dict[str, TensorCall]:
        return self.runtime.endpoints.gateway_tensor_endpoints(self.server, passage)

    def gateway_request_endpoints(
        self, spec: ModelSpec, passage: GatewayPass
    ) -> dict[str, RequestCall]:
        return self.runtime.endpoints.gateway_request_endpoints(self.server, spec, passage)

    def version_endpoints(self, spec: ModelSpec, version: int) -> dict[str, TensorCall]:
        return self.runtime.endpoints.version_endpoints(self.server, spec, version)

    def generation_endpoints(
        self, spec: ModelSpec, version: int | None = None
    ) -> dict[str, GenerateCall]:
        return self.runtime.endpoints.generation_endpoints(self.server, spec, version)

    # --- versions
    def versions(self, spec: ModelSpec) -> ServedVersions:
        return self.runtime.versions.versions(self.server, spec)

    def rollout_problems(self, spec: ModelSpec) -> list[str]:
        return self.runtime.versions.rollout_problems(self.server, spec)

    def load_beside(self, spec: ModelSpec, version: int, layout: Layout) -> bool:
        return self.runtime.versions.load_beside(self.server, spec, version, layout)

    def make_default(self, spec: ModelSpec, version: int, keep: int | None, layout: Layout) -> None:
        self.runtime.versions.make_default(self.server, spec, version, keep, layout)

    def unload(self, spec: ModelSpec, version: int, layout: Layout) -> None:
        self.runtime.versions.unload(self.server, spec, version, layout)

    def requests_served(self, spec: ModelSpec, version: int) -> float:
        return self.runtime.versions.requests_served(self.server, spec, version)
