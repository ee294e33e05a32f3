"""Triton's endpoints for `make verify` and rollouts' gates: the tensor models over HTTP and
gRPC, and the ensembles (encoded requests in, label and score out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.runtimes.calls import GenerateCall, RequestCall, TensorCall
from scripts.runtimes.protocols import VIA_GATEWAY, GatewayPass
from scripts.runtimes.triton import server as tr, versions
from scripts.runtimes.triton.client import (
    TritonClient,
    decode_labels,
    spec_datatypes,
    spec_shapes,
    wire_shapes,
)
from scripts.runtimes.triton.ensemble import LABEL, SCORE, has_ensemble
from scripts.runtimes.triton.generation_calls import generation_calls
from scripts.spec import ModelSpec


def clients(server: tr.Triton) -> dict[str, TritonClient]:
    return {
        "http": TritonClient(server.http_url, "http"),
        "grpc": TritonClient(server.grpc_url, "grpc"),
    }


class TritonEndpoints:
    """Endpoints: /v2/models/<model>[/versions/<v>]/infer over HTTP and gRPC."""

    def tensor_endpoints(self, server: tr.Triton) -> dict[str, TensorCall]:
        return self.calls(server, None, None)

    def request_endpoints(self, server: tr.Triton, spec: ModelSpec) -> dict[str, RequestCall]:
        if not has_ensemble(spec):
            return {}
        return {
            f"triton-ensemble-{protocol}": ensemble_call(spec, client)
            for protocol, client in clients(server).items()
        }

    def gateway_tensor_endpoints(
        self, server: tr.Triton, passage: GatewayPass
    ) -> dict[str, TensorCall]:
        """HTTP through the gateway (gRPC does not go through it)."""
        return {f"triton-http{VIA_GATEWAY}": tensor_call(TritonClient.through(passage), None, None)}

    def gateway_request_endpoints(
        self, server: tr.Triton, spec: ModelSpec, passage: GatewayPass
    ) -> dict[str, RequestCall]:
        if not has_ensemble(spec):
            return {}
        client = TritonClient.through(passage)
        return {f"triton-ensemble-http{VIA_GATEWAY}": ensemble_call(spec, client)}

    def version_endpoints(
        self, server: tr.Triton, spec: ModelSpec, version: int
    ) -> dict[str, TensorCall]:
        """The version under the model's name once loaded there, else as its candidate."""
        public = version in versions.loaded(server, spec.name)
        served = spec.name if public else versions.CANDIDATE.format(spec.name)
        return self.calls(server, served, version)

    def generation_endpoints(
        self, server: tr.Triton, spec: ModelSpec, version: int | None = None
    ) -> dict[str, GenerateCall]:
        if version is None or version in versions.loaded(server, spec.name):
            return generation_calls(server, spec, version=version)
        return generation_calls(server, spec, versions.CANDIDATE.format(spec.name), version)

    def calls(
        self, server: tr.Triton, served: str | None, version: int | None
    ) -> dict[str, TensorCall]:
        """`served`/`version`: one model name and version instead of each spec's default."""
        return {
            f"triton-{protocol}": tensor_call(client, served, version)
            for protocol, client in clients(server).items()
        }


def tensor_call(client: TritonClient, served: str | None, version: int | None) -> TensorCall:
    """Golden tensors through one client to the tensor model (`served`: another name)."""
    return lambda spec, inputs: spec_shapes(
        spec,
        client.infer(
            served or spec.name, wire_shapes(spec, inputs), spec_datatypes(spec), version=version
        ),
    )


def ensemble_call(spec: ModelSpec, client: TritonClient) -> RequestCall:
    """An example request's bytes through one client to the model's ensemble."""
    ensemble_input = spec.task.preprocess.ensemble_input
    assert ensemble_input is not None  # has_ensemble

    def infer(path: Path) -> dict[str, Any]:
        out = client.infer(f"{spec.name}_ensemble", {ensemble_input: [path.read_bytes()]})
        if spec.task.serving.labelled:
            return {
                "label": decode_labels(out[LABEL])[0],
                "score": float(out[SCORE].reshape(-1)[0]),
            }
        outputs = spec_shapes(spec, out)
        # one example: a batched model's first row, else the outputs whole
        return {n: o[0] if spec.batching.max_batch_size else o for n, o in outputs.items()}

    return infer
