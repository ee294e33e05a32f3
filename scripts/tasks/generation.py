"""task: {kind: generation}: a causal language model served from its Hugging Face folder,
decoded token by token; exported as that folder, gated and verified token for token against
eager generate(), and loaded with streams whose every token is checked."""

from __future__ import annotations

from typing import Any, Callable

from scripts.measure.traffic import GenerationTraffic, expected_tokens, stream_endpoint_sets
from scripts.measure.verify_generation import check_generation
from scripts.measure.verify_served import Check, Endpoints
from scripts.pipeline.export import ExportResult
from scripts.pipeline.export_generation import export_generation
from scripts.pipeline.layout import Layout
from scripts.rollout.generation_gate import after_switch_problems, run_generation_gate
from scripts.runtimes.protocols import GatewayPass, Live
from scripts.spec import ModelSpec
from scripts.tasks.base import OnePass


class Generation(OnePass):
    name = "generation"
    bench_command = "bench-generation"  # tokens/s, not requests/s
    traffic = GenerationTraffic
    streams_tokens = True
    gate = staticmethod(run_generation_gate)

    def export(self, spec: ModelSpec, layout: Layout, force: bool, on_format) -> ExportResult:
        return ExportResult(spec.name, *export_generation(spec, layout, force))

    def verify(self, spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
        """Token for token against eager generate(), through every generation endpoint."""
        return [Check(**row) for row in check_generation(spec, layout, endpoints.generation(spec))]

    def gate_endpoints(self, live: Live) -> Callable:
        return live.generation_endpoints

    def after_switch_problems(self, live: Live, spec: ModelSpec, layout: Layout) -> list[str]:
        return after_switch_problems(live.generation_endpoints(spec), spec, layout)

    def endpoint_sets(self, live: Live, spec: ModelSpec) -> Callable:
        return stream_endpoint_sets(live, spec)

    def gateway_endpoints(self, live: Live, passage: GatewayPass) -> dict[str, Any]:
        """Streams through the gateway are not part of traffic yet (the gateway's own tests
        stream 16 at once through it during a reload: tests/integration/test_gateway.py)."""
        return {}

    def expected_outputs(self, spec: ModelSpec, versions: list[int], layout: Layout):
        return expected_tokens(spec, versions, layout)
