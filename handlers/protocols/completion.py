"""The model's own generation protocol (`POST /predictions/<model>`): the body is the
completion's fields as they are ({"prompt", "max_tokens", "stream", ...}); the answer is one
JSON object {"text", "token_ids", "finish_reason"}, or when streaming one such JSON line per
piece."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from handlers.engines.completions import Completion, Piece, parse_body
from handlers.protocols.base import JSON, GenerationProtocol, ModelFacts, Writer, one_choice


def completion_json(piece: Piece, stream: bool) -> str:
    """A streamed piece as one JSON line, or the whole answer of a request that did not
    stream (its one piece holds the whole text and every token id)."""
    answer = {
        "text": piece.text,
        "token_ids": piece.token_ids,
        "finish_reason": piece.finish_reason,
        **({"error": piece.error} if piece.error is not None else {}),
        **({"logprobs": [asdict(score) for score in piece.logprobs]} if piece.logprobs else {}),
    }
    return json.dumps(answer) + ("\n" if stream else "")


@dataclass
class CompletionWriter:
    stream: bool = False

    def content_type(self) -> str:
        return JSON

    def admitted(self, completion: Completion) -> None:
        self.stream = completion.stream

    def piece(self, piece: Piece) -> str:
        # a request that does not stream gets its whole answer with the last piece
        return completion_json(piece, self.stream) if self.stream or piece.final else ""


class NativeCompletion(GenerationProtocol):
    name = "completion"
    route = None

    def read(self, body: Any, model: ModelFacts) -> tuple[Any, Writer]:
        fields = parse_body(body)
        one_choice(fields, "the model's own JSON")
        return fields, CompletionWriter()
