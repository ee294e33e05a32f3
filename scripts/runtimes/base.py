"""The interface every runtime plugin implements; `serve`, `verify`, `bench` and `tune` loop
over the registered plugins (scripts/runtimes/registry.py) instead of pairing runtimes by hand.

A plugin owns everything runtime-specific: translating the spec's batching and instances into
its own settings (one place, with a warning for anything it cannot represent exactly),
building its artifact from the serving plan, starting / waiting for / stopping a server, the
clients and endpoints `make verify` checks, and its stock setup for `make bench`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from handlers.plan import ServingPlan
from scripts.spec import ModelSpec
from scripts.spec.cluster import KServeSpec

# (spec, {input: rows}) -> {output: rows}: golden tensors through one served endpoint.
TensorCall = Callable[[ModelSpec, dict[str, np.ndarray]], dict[str, np.ndarray]]
# An example request file -> (label, score) as served.
RequestCall = Callable[[Path], tuple[str, float]]


@dataclass(frozen=True)
class Translation:
    """The runtime's own settings for one model, and what it could not represent exactly."""
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildRow:
    model: str
    status: str          # "built" / "up to date"
    detail: str          # where it went, what it holds
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadTarget:
    """One thing perf_analyzer can load: a served model on a running server."""
    model: str
    url: str
    protocol: str                 # http | grpc
    service_kind: str             # triton | torchserve
    data: Path                    # perf_analyzer --input-data
    token: str | None = None


@dataclass(frozen=True)
class KServeBundle:
    """One runtime's storage tree for KServe, and what its InferenceService needs to know."""
    runtime: str
    tree: Path                   # upload this folder as the storageUri
    model_format: str            # predictor.model.modelFormat.name
    runtime_version: str         # the serving image's tag, pinned to what is tested here
    protocol: str                # predictor.model.protocolVersion
    models: list[str]            # the served names inside


@dataclass(frozen=True)
class ServedVersions:
    """A model's versions on a running server: those loaded, and the one unversioned requests get."""
    loaded: list[int]
    default: int | None


def shown(path: Path, root: Path) -> Path:
    """A path as `make serve` prints it: relative to the checkout when inside it."""
    return path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path


class Runtime(ABC):
    name: ClassVar[str]           # as on the command line: RUNTIME=<name>
    title: ClassVar[str]          # as printed
    default_workdir: ClassVar[Path]  # where `make serve`'s instance runs, under the checkout

    # --- spec check time ---------------------------------------------------------------------
    @abstractmethod
    def translate(self, plan: ServingPlan) -> Translation:
        """Batching, workers/instances and timeouts in this runtime's terms."""

    # --- build -------------------------------------------------------------------------------
    @abstractmethod
    def build(self, specs: list[ModelSpec], root: Path, force: bool = False) -> list[BuildRow]:
        """Write this runtime's artifact for these models (incremental)."""

    @abstractmethod
    def served_names(self, spec: ModelSpec) -> list[str]:
        """The names this runtime serves the model under (tensor model first)."""

    @abstractmethod
    def served_format(self, spec: ModelSpec, root: Path) -> str:
        """The exported format this runtime runs for the model (the tuner dedupes on it)."""

    @abstractmethod
    def signed_artifacts(self, specs: list[ModelSpec], root: Path) -> list[Path]:
        """The built files or folders that serve these models (what `make sign` signs)."""

    @abstractmethod
    def kserve_bundle(self, specs: list[ModelSpec], root: Path, out: Path, settings: KServeSpec) -> KServeBundle:
        """Write the storage tree KServe's runtime for this server starts from (under `out`)."""

    # --- serve -------------------------------------------------------------------------------
    @abstractmethod
    def start(self, specs: list[ModelSpec], root: Path, workdir: Path | None = None,
              free_ports: bool = False, timeout_s: float = 300, names: list[str] | None = None) -> Any:
        """Build what is missing, start a server, wait until every model is READY (stopping
        it again on failure); `workdir` None means the instance `make serve` runs; `names`
        loads only those of the served names."""

    @abstractmethod
    def running(self, root: Path) -> Any | None:
        """The instance `make serve` started, if it runs."""

    def stop(self, server_or_root: Any) -> bool:
        """Stop a server (or `make serve`'s instance under a root); True if one ran."""
        workdir = getattr(server_or_root, "workdir", None) or server_or_root / self.default_workdir
        return self.stop_workdir(workdir)

    @abstractmethod
    def stop_workdir(self, workdir: Path) -> bool:
        """Stop the instance that runs from workdir (never another one)."""

    @abstractmethod
    def endpoints_report(self, server: Any, root: Path) -> list[tuple[str, str]]:
        """(label, where) lines that `make serve` prints once READY."""

    # --- verify ------------------------------------------------------------------------------
    @abstractmethod
    def tensor_endpoints(self, server: Any) -> dict[str, TensorCall]:
        """Named endpoints that take model-input tensors (REST, gRPC, ...)."""

    @abstractmethod
    def request_endpoints(self, server: Any, spec: ModelSpec) -> dict[str, RequestCall]:
        """Named endpoints that take what a client sends (image bytes, text, rows)."""

    # --- bench and tune ---------------------------------------------------------------------
    @abstractmethod
    def load_target(self, server: Any, spec: ModelSpec, root: Path, workdir: Path) -> LoadTarget:
        """perf_analyzer's target for the model's tensor endpoint (HTTP) on a running server,
        with golden samples as request data written under workdir."""

    @abstractmethod
    def bench_deployment(self, specs: list[ModelSpec], root: Path, workdir: Path,
                         log: Callable[[str], None]) -> AbstractContextManager[list[tuple[str, str, str, LoadTarget]]]:
        """A context manager: this project's deployment and the runtime's stock setup side by
        side on free ports, yielding [(model, setup key, protocol, LoadTarget)]; stopped on exit."""

    # --- versions and rollout (scripts/rollout/) ---------------------------------------------
    @abstractmethod
    def build_version(self, spec: ModelSpec, version: int, root: Path) -> BuildRow:
        """Build one version of the model beside the others (immutable once built)."""

    @abstractmethod
    def versions(self, server: Any, spec: ModelSpec) -> ServedVersions:
        """The model's versions as the server has them now."""

    def rollout_problems(self, server: Any, spec: ModelSpec) -> list[str]:
        """Why versions cannot be loaded on this server (before anything is built); none by default."""
        return []

    @abstractmethod
    def load_beside(self, server: Any, spec: ModelSpec, version: int, root: Path) -> bool:
        """Load a version next to the serving one; unversioned requests keep the serving one.
        False when it was loaded already."""

    @abstractmethod
    def version_endpoints(self, server: Any, spec: ModelSpec, version: int) -> dict[str, TensorCall]:
        """Tensor endpoints that reach exactly this version (loaded beside or serving)."""

    @abstractmethod
    def make_default(self, server: Any, spec: ModelSpec, version: int, keep: int | None, root: Path) -> None:
        """Send unversioned requests to `version`, keeping `keep` loaded for a rollback."""

    @abstractmethod
    def unload(self, server: Any, spec: ModelSpec, version: int, root: Path) -> None:
        """Retire a version that is not the default (call once it has nothing in flight)."""

    @abstractmethod
    def requests_served(self, server: Any, spec: ModelSpec, version: int) -> float:
        """The server's count of requests this version finished (its metrics): unchanged
        between two reads, the version has drained."""
