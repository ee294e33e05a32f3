"""vLLM's tensor contract, as Triton's vLLM backend serves it (what Triton's `generate` and
`generate_stream` endpoints and genai-perf speak): inputs `text_input` (BYTES), `stream` and
`exclude_input_in_output` (BOOL), `sampling_parameters` (BYTES, JSON, numbers possibly as
strings); outputs `text_output` (BYTES), and ours beside it, `token_ids` (INT64) and
`finish_reason` (BYTES). The backend's optional outputs, each sent when its BOOL input
`return_<name>` is true (docs/additional_outputs.md of triton-inference-server/vllm_backend):
`finish_reason`, `cumulative_logprob` (FP32, the chosen tokens' so far), `logprobs` (BYTES: JSON,
per new token {token id: {logprob, rank, decoded_token}}, the chosen token and the
`sampling_parameters.logprobs` most likely; "null" when those were not asked for),
`num_input_tokens` and `num_output_tokens` (UINT32, the tokens this response adds). The Triton
model hands the request's tensors in as numpy arrays and sends what the writer returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handlers.engines.completions import Completion, Logprob, Piece, vllm_numbers
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import JSON, GenerationProtocol, ModelFacts, is_json_object, one_choice

RETURNS = ("cumulative_logprob", "logprobs", "num_input_tokens", "num_output_tokens")
INPUTS = (
    "text_input",
    "stream",
    "sampling_parameters",
    "exclude_input_in_output",
    "return_finish_reason",  # ours is always sent
    *(f"return_{name}" for name in RETURNS),
)


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


def scored_tokens(logprobs: tuple[Logprob, ...]) -> bytes:
    """vLLM's `logprobs` output: per token, the chosen one's and the top ones' by token id."""
    tokens: list[dict[int, dict[str, Any]]] = []
    for scored in logprobs:
        entry = {scored.token_id or 0: (scored.logprob, scored.rank, scored.token)}
        for rank, (token_id, (text, value)) in enumerate(zip(scored.top_ids, scored.top), 1):
            entry.setdefault(token_id, (value, rank, text))
        tokens.append(
            {
                token_id: {"logprob": value, "rank": rank, "decoded_token": text}
                for token_id, (value, rank, text) in entry.items()
            }
        )
    return json.dumps(tokens).encode()


@dataclass
class TensorWriter:
    exclude_input: bool
    returns: frozenset[str] = frozenset()  # the optional outputs asked for (RETURNS)
    shows_logprobs: bool = False  # sampling_parameters asked for them ("null" otherwise)
    prompt: str = ""
    stream: bool = False
    prompt_tokens: int = 0
    cumulative: float = 0.0  # the chosen tokens' log-probabilities so far

    def content_type(self) -> str:
        return JSON  # unused: the runtime sends tensors

    def admitted(self, completion: Completion) -> None:
        self.prompt, self.stream = completion.prompt, completion.stream
        self.prompt_tokens = len(completion.prompt_ids)

    def piece(self, piece: Piece) -> dict[str, NDArray[Any]] | None:
        if not self.stream and not piece.final:
            return None  # a request that does not stream gets one response, at the end
        # a streamed piece holds its new tokens' scores, the one answer of a request that does
        # not stream all of them
        self.cumulative += sum(s.logprob or 0.0 for s in piece.logprobs)
        text = piece.text if self.stream or self.exclude_input else self.prompt + piece.text
        return {
            "text_output": np.array([text.encode("utf-8")], dtype=np.object_),
            "token_ids": np.array(piece.token_ids, dtype=np.int64),
            "finish_reason": np.array([(piece.finish_reason or "").encode()], dtype=np.object_),
            **self.optional(piece),
        }

    def optional(self, piece: Piece) -> dict[str, NDArray[Any]]:
        """The optional outputs asked for, as vLLM's backend shapes them."""
        logprobs = scored_tokens(piece.logprobs) if self.shows_logprobs else b"null"
        values = {
            "cumulative_logprob": np.array([self.cumulative], dtype=np.float32),
            "logprobs": np.array([logprobs], dtype=np.object_),
            "num_input_tokens": np.array([self.prompt_tokens], dtype=np.uint32),
            "num_output_tokens": np.array([len(piece.token_ids)], dtype=np.uint32),
        }
        return {name: values[name] for name in RETURNS if name in self.returns}


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
        returns = frozenset(name for name in RETURNS if flag(body, f"return_{name}"))
        shows_logprobs = fields.get("logprobs") is not None
        if "cumulative_logprob" in returns and not shows_logprobs:
            fields["logprobs"] = 0  # the chosen tokens' only: what the sum needs
        writer = TensorWriter(flag(body, "exclude_input_in_output"), returns, shows_logprobs)
        return fields, writer
