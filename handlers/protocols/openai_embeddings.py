"""OpenAI's embeddings API (`.../v1/embeddings`) for a one-pass model whose task kind offers it
(kind embedding) and whose pre-processing takes text: `input` (a string or a list of them) in,
one vector per text out, as OpenAI answers:

    {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [...]}, ...],
     "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}

The vectors are the model's answers' `embedding` (handlers/tasks.py: L2-normalised when the
spec says task.normalize), as JSON numbers or, with `encoding_format: "base64"` (what the
`openai` client asks for by default), as the base64 of little-endian float32 bytes, which the
client decodes. What is not served is refused by name: token-id inputs, `dimensions`.
On TorchServe: `POST /predictions/<model>/<version>/v1/embeddings`; the `openai` client's base URL
is `http://host:8080/predictions/<model>/<version>/v1`, its API key the inference token.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from handlers.engines.completions import MAX_MODEL_NAME, parse_body
from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import ForwardProtocol, is_json_array

FIELDS = {"input", "model", "encoding_format", "user"}  # user: accepted, nothing to do with it


def texts_of(given: Any) -> list[str]:
    """`input` as a list of texts; token ids (a list of ints, or of lists) are refused."""
    texts = [given] if isinstance(given, str) else given
    if not is_json_array(texts) or not texts:
        raise RequestError("input: send a string or a non-empty list of strings")
    for i, text in enumerate(texts):
        if isinstance(text, (int, list)):
            raise RequestError(
                "input: token ids are not served; send text (a string or a list of strings), "
                "which this model tokenizes itself"
            )
        if not isinstance(text, str):
            raise RequestError(f"input[{i}]: expected a string, got {type(text).__name__}")
    return texts


ENCODINGS = ("float", "base64")


def encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@dataclass
class EmbeddingsWriter:
    name: ClassVar[str] = "openai-embeddings"  # the request format in the model's metrics
    model: str
    encoding: str = "float"

    def answer(
        self, plan: ServingPlan, inputs: dict[str, NDArray[Any]], answers: list[dict[str, Any]]
    ) -> dict[str, Any]:
        tokens = plan.preprocess.token_count(inputs, plan.inputs)
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encoded(a["embedding"], self.encoding),
                }
                for i, a in enumerate(answers)
            ],
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class OpenAIEmbeddings(ForwardProtocol):
    name = "openai-embeddings"
    route = "v1/embeddings"
    needs = "task kind embedding with a text pre-processing"

    def serves(self, plan: ServingPlan) -> bool:
        return plan.preprocess.takes_text

    def read(self, body: Any, plan: ServingPlan) -> tuple[dict[str, Any], EmbeddingsWriter]:
        fields = parse_body(body)
        if "dimensions" in fields:
            raise RequestError(
                "dimensions: not served; this model's embeddings have the size it was built with"
            )
        unknown = sorted(set(fields) - FIELDS)
        if unknown:
            raise RequestError(
                f"unknown field(s) {unknown}; an embeddings request takes {sorted(FIELDS)}"
            )
        encoding = fields.get("encoding_format") or "float"
        if encoding not in ENCODINGS:
            raise RequestError(
                f"encoding_format: {str(encoding)[:20]!r} is not served; send one of "
                f"{list(ENCODINGS)}"
            )
        if "input" not in fields:
            raise RequestError("input: missing; an embeddings request needs it")
        model = fields.get("model") or plan.name
        if not isinstance(model, str) or len(model) > MAX_MODEL_NAME:
            raise RequestError(f"model: a name of at most {MAX_MODEL_NAME} characters")
        return {"inputs": texts_of(fields["input"])}, EmbeddingsWriter(model, encoding)
