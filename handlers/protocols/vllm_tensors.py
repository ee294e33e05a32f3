"""vLLM's tensor contract, as Triton's vLLM backend serves it (what Triton's `generate` and
`generate_stream` endpoints and genai-perf speak): inputs `text_input` (BYTES), `stream` and
`exclude_input_in_output` (BOOL), `sampling_parameters` (BYTES, JSON, numbers possibly as
strings); outputs `text_output` (BYTES), and ours beside it, `token_ids` (INT64) and
`finish_reason` (BYTES). The Triton model hands the request's tensors in as numpy arrays and
sends what the writer returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handlers.engines.completions import Completion, Piece, vllm_numbers
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import JSON, GenerationProtocol, ModelFacts, is_json_object, one_choice

INPUTS = ("text_input", "stream", "sampling_parameters", "exclude_input_in_output")


def text(values: dict[str, NDArray[Any] | None], name: str) -> str | None:
    tensor = values.get(name)
    if tensor is None:
        return None
    value = tensor.reshape(-1)[0]
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})", "decode"
        ) from None


def flag(values: dict[str, NDArray[Any] | None], name: str) -> bool:
    tensor = values.get(name)
    return bool(tensor.reshape(-1)[0]) if tensor is not None else False


@dataclass
class TensorWriter:
    exclude_input: bool
    prompt: str = ""
    stream: bool = False

    def content_type(self) -> str:
        return JSON  # unused: the runtime sends tensors

    def admitted(self, completion: Completion) -> None:
        self.prompt, self.stream = completion.prompt, completion.stream

    def piece(self, piece: Piece) -> dict[str, NDArray[Any]] | None:
        if not self.stream and not piece.final:
            return None  # a request that does not stream gets one response, at the end
        text = piece.text if self.stream or self.exclude_input else self.prompt + piece.text
        return {
            "text_output": np.array([text.encode("utf-8")], dtype=np.object_),
            "token_ids": np.array(piece.token_ids, dtype=np.int64),
            "finish_reason": np.array([(piece.finish_reason or "").encode()], dtype=np.object_),
        }


class VLLMTensors(GenerationProtocol):
    name = "generate"
    route = None

    def read(self, body: Any, model: ModelFacts) -> tuple[dict[str, Any], TensorWriter]:
        """`body`: {input name: numpy array, or None when not sent}."""
        prompt, parameters = text(body, "text_input"), text(body, "sampling_parameters")
        try:
            sampling: object = json.loads(parameters) if parameters else {}
        except ValueError as exc:
            raise RequestError(f"sampling_parameters: not JSON: {exc}", "decode") from None
        if not is_json_object(sampling):
            raise RequestError(
                'sampling_parameters: expected a JSON object, e.g. {"max_tokens": 16}'
            )
        one_choice(sampling, "vLLM's tensor contract")
        constraint = sampling.get("structured_outputs")
        if isinstance(constraint, str):  # vLLM's backend takes it as JSON text
            try:
                sampling["structured_outputs"] = json.loads(constraint)
            except ValueError as exc:
                raise RequestError(f"structured_outputs: not JSON: {exc}", "decode") from None
        fields = {**vllm_numbers(sampling), "prompt": prompt, "stream": flag(body, "stream")}
        return fields, TensorWriter(flag(body, "exclude_input_in_output"))
