"""A generation model's endpoints on TorchServe, as a client reads them: HTTP with the answer
whole and HTTP chunked (one JSON line per token).

Not gRPC: under continuousBatching TorchServe 0.12 ends every gRPC call after its first
response. Its GRPCJob.isOpen() returns the observer's isCancelled() (inverted), so
ContinuousBatching drops the job as "Connection to client got closed" after one step;
`Predictions` completes after one response anyway. The project is archived upstream, so
gRPC streaming of generation is Triton's (`ModelStreamInfer`); docs/generation.md says so."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from scripts.runtimes.calls import GenerateCall, STREAM_TIMEOUT_S
from scripts.runtimes.streams import joined_pieces
from scripts.runtimes.torchserve.client import TorchServeClient

if TYPE_CHECKING:
    from scripts.runtimes.torchserve.server import TorchServe
    from scripts.spec import ModelSpec


def generation_calls(
    server: TorchServe, spec: ModelSpec, name: str | None = None, version: int | None = None
) -> dict[str, GenerateCall]:
    """The endpoints of the model, or of another name serving it (bench's stock route);
    `version`: exactly that version."""
    http = TorchServeClient.for_server(server)
    http.timeout_s = STREAM_TIMEOUT_S
    name, route = name or spec.name, str(version) if version else None

    def whole(body: dict[str, Any]) -> dict[str, Any]:
        reply = http.predict_raw(name, {**body, "stream": False}, version=route)
        return {**reply.json(), "status": reply.status_code}  # one answer: no pieces

    def streamed(body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        reply = http.predict_raw(name, {**body, "stream": True}, version=route, stream=True)
        if reply.status_code != 200:
            return {**reply.json(), "status": reply.status_code}
        return joined_pieces((json.loads(line) for line in reply.iter_lines() if line), started)

    return {"torchserve-rest": whole, "torchserve-rest-stream": streamed}
