"""The build side of a task kind: how a model of that kind is trained, exported, gated before a
rollout, verified once served and sent traffic. The base is a one-pass model (one forward per
request, answered with its output tensors); handlers/tasks.py is the same kind as the servers
see it. scripts/tasks/__init__.py finds a spec's kind by name."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import numpy as np
from torch import nn

from scripts.measure.traffic import (
    Client,
    Traffic,
    clients_for,
    expected_rows,
    tensor_endpoint_sets,
)
from scripts.measure.verify_served import Check, Endpoints, check_golden, check_requests
from scripts.pipeline.export import ExportResult, export_model
from scripts.pipeline.layout import Layout
from scripts.rollout.gate import Gate, golden_check, run_gate
from scripts.runtimes.protocols import GatewayPass, Live, Server
from scripts.spec import ModelSpec


class OnePass:
    name: ClassVar[str]
    bench_command: ClassVar[str] = "bench"  # the make target that measures it
    traffic: ClassVar[type[Traffic]] = Traffic  # load that checks every answer (drills)
    gate = staticmethod(run_gate)  # what a version shows before a rollout moves traffic to it
    streams_tokens: ClassVar[bool] = False  # token latencies (TTFT, ITL) in its metrics

    # --- training (models whose spec has training data) ----------------------------------------
    def loss(self, spec: ModelSpec, outputs: int) -> nn.Module:
        return nn.MSELoss()

    def held_out_metrics(self, spec: ModelSpec, output: np.ndarray, y: np.ndarray) -> dict:
        return {"held_out_mse": float(((output - y) ** 2).mean())}

    # --- export ----------------------------------------------------------------------------
    def export(self, spec: ModelSpec, layout: Layout, force: bool, on_format) -> ExportResult:
        return export_model(spec, layout, force, on_format)

    # --- served -----------------------------------------------------------------------------
    def verify(self, spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
        """Golden samples through every tensor endpoint, example requests through the rest."""
        return check_golden(spec, layout, endpoints) + check_requests(spec, layout, endpoints)

    def gate_endpoints(self, live: Live) -> Callable:
        """(spec, version) -> the endpoints a gate compares versions through."""
        return live.version_endpoints

    def after_switch_problems(self, live: Live, spec: ModelSpec, layout: Layout) -> list[str]:
        """Unversioned requests must now get exactly that version's golden outputs."""
        gate = Gate()
        golden_check(live.tensor_endpoints(), spec, layout, gate)
        before = f"version {spec.version} golden samples"
        return [p.replace(before, "unversioned requests after the switch") for p in gate.problems]

    def endpoint_sets(self, live: Live, spec: ModelSpec) -> Callable:
        """(version or None) -> {endpoint: call}: what traffic is sent through."""
        return tensor_endpoint_sets(live, spec)

    def gateway_endpoints(self, live: Live, passage: GatewayPass) -> dict[str, Any]:
        """What traffic sends through the gateway: the tensor endpoints over HTTP."""
        return live.gateway_tensor_endpoints(passage)

    def clients(
        self,
        servers: Mapping[str, Server],
        spec: ModelSpec,
        per_endpoint: int,
        named: int | None = None,
        passage: GatewayPass | None = None,
    ) -> list[Client]:
        """Traffic's clients on every endpoint of every running server ({runtime: server});
        with `passage`, through the gateway in front of them too."""
        through = None
        if passage is not None:
            through = functools.partial(self.gateway_endpoints, passage=passage)
        return clients_for(servers, spec, per_endpoint, named, self.endpoint_sets, through)

    def expected_outputs(self, spec: ModelSpec, versions: list[int], layout: Layout):
        """(inputs, {version: what each answers}) for traffic to check answers against."""
        return expected_rows(spec, versions, layout)
