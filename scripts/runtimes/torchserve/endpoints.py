"""TorchServe's endpoints for `make verify` and rollouts' gates: REST and gRPC with the token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scripts.runtimes.calls import GenerateCall, RequestCall, TensorCall
from scripts.runtimes.protocols import VIA_GATEWAY, GatewayPass
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.torchserve.generation_calls import generation_calls
from scripts.runtimes.torchserve.grpc_client import TorchServeGrpcClient
from scripts.spec import ModelSpec, TensorSpec

Arrays = dict[str, NDArray[Any]]  # tensors by name, the batch axis first
Json = dict[str, Any]

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain",
    ".json": "application/json",
}
JSON_BYTES_PER_VALUE = 24  # a float32 as JSON text, with separators, at most


def max_request_bytes(config: Path) -> int:
    """max_request_size of the running server's config.properties (TorchServe's default else)."""
    match = re.search(r"^max_request_size=(\d+)\s*$", config.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 6_553_600


def request_chunks(inputs: Arrays, limit: int) -> list[Arrays]:
    """Rows split into requests whose JSON stays under TorchServe's max_request_size (a
    224x224 RGB tensor is ~3 MB of JSON: a few per request)."""
    row_values = sum(int(np.prod(v.shape[1:])) for v in inputs.values())
    per_request = max(1, limit // (row_values * JSON_BYTES_PER_VALUE))
    rows = len(next(iter(inputs.values())))
    return [
        {k: v[i : i + per_request] for k, v in inputs.items()} for i in range(0, rows, per_request)
    ]


def output_array(tensor: TensorSpec, value: Any) -> NDArray[Any]:
    """A JSON output as an array; an empty one (no detection) keeps its fixed axes ([0, 4]),
    which JSON's [] cannot carry."""
    array = np.array(value)
    if array.size == 0 and tensor.shape.count(-1) <= 1 and len(tensor.shape) > 1:
        return array.reshape(tensor.shape)
    return array


def answers_to_outputs(spec: ModelSpec, answers: list[Json] | Json) -> Arrays:
    if isinstance(answers, dict):  # a never-batched model's one answer: its outputs as they are
        return {t.name: output_array(t, answers["outputs"][t.name]) for t in spec.outputs}
    return {t.name: np.array([a["outputs"][t.name] for a in answers]) for t in spec.outputs}


def tensors(rows: Arrays) -> Json:
    return {"tensors": {k: v.tolist() for k, v in rows.items()}}


class TorchServeEndpoints:
    """Endpoints: /predictions/<model>[/<version>] over REST and gRPC."""

    def tensor_endpoints(self, server: ts.TorchServe) -> dict[str, TensorCall]:
        return self.calls(server, None)

    def request_endpoints(self, server: ts.TorchServe, spec: ModelSpec) -> dict[str, RequestCall]:
        return {
            "torchserve-rest (requests)": request_call(spec, TorchServeClient.for_server(server))
        }

    def gateway_tensor_endpoints(
        self, server: ts.TorchServe, passage: GatewayPass
    ) -> dict[str, TensorCall]:
        """REST through the gateway (gRPC does not go through it)."""
        limit = max_request_bytes(server.workdir / "config.properties")
        client = TorchServeClient.through(passage)
        return {f"torchserve-rest{VIA_GATEWAY}": tensor_call(client, limit, None)}

    def gateway_request_endpoints(
        self, server: ts.TorchServe, spec: ModelSpec, passage: GatewayPass
    ) -> dict[str, RequestCall]:
        client = TorchServeClient.through(passage)
        return {f"torchserve-rest (requests){VIA_GATEWAY}": request_call(spec, client)}

    def version_endpoints(
        self, server: ts.TorchServe, spec: ModelSpec, version: int
    ) -> dict[str, TensorCall]:
        """Requests that name the version (/predictions/<model>/<version>)."""
        return self.calls(server, version)

    def generation_endpoints(
        self, server: ts.TorchServe, spec: ModelSpec, version: int | None = None
    ) -> dict[str, GenerateCall]:
        return generation_calls(server, spec, version=version)

    def calls(self, server: ts.TorchServe, version: int | None) -> dict[str, TensorCall]:
        limit = max_request_bytes(server.workdir / "config.properties")
        named = str(version) if version is not None else None
        return {
            "torchserve-rest": tensor_call(TorchServeClient.for_server(server), limit, named),
            "torchserve-grpc": tensor_call(TorchServeGrpcClient.for_server(server), limit, named),
        }


def tensor_call(
    client: TorchServeClient | TorchServeGrpcClient, limit: int, version: str | None
) -> TensorCall:
    """Golden tensors through one client, in requests under the server's size limit."""

    def infer(spec: ModelSpec, inputs: Arrays) -> Arrays:
        if spec.batching.max_batch_size == 0:  # one call: the outputs need every row
            return answers_to_outputs(
                spec, client.predict(spec.name, tensors(inputs), version=version)
            )
        answers: list[Json] = []
        for chunk in request_chunks(inputs, limit):
            answers += client.predict(spec.name, tensors(chunk), version=version)
        return answers_to_outputs(spec, answers)

    return infer


def request_call(spec: ModelSpec, client: TorchServeClient) -> RequestCall:
    """An example request's bytes through one client, answered as the task answers it."""

    def call(path: Path) -> dict[str, Any]:
        answer = client.predict(spec.name, path.read_bytes(), CONTENT_TYPES.get(path.suffix))
        if spec.task.serving.labelled:
            return {"label": answer["label"], "score": answer["score"]}
        return {t.name: output_array(t, answer["outputs"][t.name]) for t in spec.outputs}

    return call
