"""A generation model's endpoints on Triton, as NVIDIA's clients use them: HTTP `generate`
(one answer), `generate_stream` (server-sent events) and gRPC `ModelStreamInfer`
(tritonclient's start_stream / async_stream_infer)."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import requests

from scripts.runtimes.calls import GenerateCall, STREAM_TIMEOUT_S
from scripts.runtimes.streams import joined_pieces

if TYPE_CHECKING:
    from tritonclient.grpc import InferResult
    from tritonclient.utils import InferenceServerException

    from scripts.runtimes.triton.server import Triton
    from scripts.spec import ModelSpec


def vllm_body(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """A completion request in vLLM's tensor contract (what `generate` takes as JSON)."""
    sampling = {k: v for k, v in body.items() if k not in ("prompt", "stream")}
    return {
        "text_input": body["prompt"],
        "stream": stream,
        "sampling_parameters": json.dumps(sampling),
        "exclude_input_in_output": True,
    }


def piece(answer: dict[str, Any]) -> dict[str, Any]:
    ids = answer.get("token_ids", [])
    return {
        "text": answer.get("text_output", ""),
        "token_ids": [ids] if isinstance(ids, int) else ids,
        "finish_reason": answer.get("finish_reason") or None,
    }


def generation_calls(
    server: Triton, spec: ModelSpec, name: str | None = None, version: int | None = None
) -> dict[str, GenerateCall]:
    """The endpoints of the model, or of another name serving it (bench's stock model, a
    rollout's candidate); `version`: exactly that version."""
    name = name or spec.name
    url = f"http://{server.http_url}/v2/models/{name}" + (f"/versions/{version}" if version else "")

    def whole(body: dict[str, Any]) -> dict[str, Any]:
        reply = requests.post(
            f"{url}/generate", json=vllm_body(body, False), timeout=STREAM_TIMEOUT_S
        )
        if reply.status_code != 200:
            return {**reply.json(), "status": reply.status_code}
        return {**piece(reply.json()), "status": 200}  # one answer: no pieces

    def streamed(body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        body = vllm_body(body, True)
        reply = requests.post(
            f"{url}/generate_stream", json=body, stream=True, timeout=STREAM_TIMEOUT_S
        )
        events = (json.loads(line[5:]) for line in reply.iter_lines() if line.startswith(b"data:"))
        return joined_pieces((e if "error" in e else piece(e) for e in events), started)

    def grpc_streamed(body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        pieces = grpc_pieces(server.grpc_url, name, vllm_body(body, True), version)
        return joined_pieces(pieces, started)

    return {
        "triton-generate": whole,
        "triton-generate-stream": streamed,
        "triton-grpc-stream": grpc_streamed,
    }


def output(result: InferResult, name: str) -> npt.NDArray[Any]:
    array = result.as_numpy(name)
    if array is None:
        raise RuntimeError(f"no output {name!r} in the reply")
    return array


def grpc_pieces(
    grpc_url: str, model: str, body: dict[str, Any], version: int | None = None
) -> Iterator[dict[str, Any]]:
    """One request over a gRPC stream; yields its pieces until the one with a finish reason."""
    import tritonclient.grpc as grpcclient

    answers: queue.Queue[tuple[InferResult | None, InferenceServerException | None]] = queue.Queue()
    client = grpcclient.InferenceServerClient(grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        inputs: list[grpcclient.InferInput] = []
        for name, value, datatype in (
            ("text_input", body["text_input"].encode(), "BYTES"),
            ("stream", True, "BOOL"),
            ("sampling_parameters", body["sampling_parameters"].encode(), "BYTES"),
            ("exclude_input_in_output", True, "BOOL"),
        ):
            tensor = grpcclient.InferInput(name, [1], datatype)
            dtype = np.object_ if datatype == "BYTES" else np.bool_
            tensor.set_data_from_numpy(np.array([value], dtype=dtype))
            inputs.append(tensor)
        client.async_stream_infer(model, inputs, model_version=str(version or ""))
        while True:
            result, error = answers.get(timeout=STREAM_TIMEOUT_S)
            if error is not None:
                yield {"error": str(error)}
                return
            assert result is not None  # tritonclient passes a result or an error
            reason = output(result, "finish_reason").reshape(-1)[0].decode()
            yield {
                "text": output(result, "text_output").reshape(-1)[0].decode(),
                "token_ids": output(result, "token_ids").tolist(),
                "finish_reason": reason or None,
            }
            if reason:
                return
    finally:
        client.stop_stream()
        client.close()
