"""What a runtime's bench capability (scripts/runtimes/protocols.py: BenchSetup) hands the
benchmarks: the setups it is measured as, the bar its deployment must reach against its stock
one, perf_analyzer's targets on its servers, and a generation model served both ways."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.runtimes.calls import GenerateCall


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
    certificate: Path | None = None  # an https:// url's CA to verify it with (the gateway's)


DeploymentTargets = list[tuple[str, str, str, LoadTarget]]  # (model, setup, protocol, target)


@dataclass(frozen=True)
class Deployment:
    """What a runtime's bench deployment hands `make bench`: its load targets, and the server
    they are on (the gateway is put in front of it: scripts/measure/bench/gateway.py)."""

    targets: DeploymentTargets
    server: Any  # the runtime's own server object


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
    gateway: bool = False  # this project's deployment through the gateway (scripts/gateway/)


@dataclass(frozen=True)
class GenerationDeployment:
    """A generation model served by this project and by the runtime's stock setup, side by side
    in one server."""

    calls: dict[str, GenerateCall]  # {setup key: its streamed endpoint}
    ready_s: float  # start-up until both were READY


@dataclass(frozen=True)
class StockBar:
    """The throughput a runtime's deployment must reach against its stock setup (digits_cnn at
    concurrency 16), and that setup in words."""

    ratio: float
    stock_words: str


def stock_setup_key(runtime: str) -> str:
    return f"{runtime}_stock"


def gateway_setup_key(runtime: str) -> str:
    return f"{runtime}_gateway"


def bench_setups(
    runtime: str, title: str, stock_label: str, protocols: tuple[str, ...], gateway: bool
) -> tuple[Setup, ...]:
    """A runtime's stock setup, this project's deployment, the same through the gateway (over
    HTTPS; where the load generator speaks TLS to it), and that deployment serving the gated
    int8 ONNX (over HTTP)."""
    gated = Setup(
        gateway_setup_key(runtime),
        f"{title}, this project through the gateway (HTTPS, a client key)",
        runtime,
        False,
        ("http",),
        gateway=True,
    )
    return (
        Setup(
            stock_setup_key(runtime), f"{title}, {stock_label} (stock)", runtime, True, protocols
        ),
        Setup(runtime, f"{title}, this project", runtime, False, protocols),
        *((gated,) if gateway else ()),
        Setup(
            f"{runtime}_int8", f"{title}, this project, int8 ONNX", runtime, False, ("http",), True
        ),
    )
