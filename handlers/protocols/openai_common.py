"""What OpenAI's completions and chat completions share: reading the fields both take, and
writing the answer (server-sent events ending with `data: [DONE]` when streaming, one JSON
object otherwise, `usage` in both). openai_completions.py and openai_chat.py add what differs.

On TorchServe a route is the URL after the model's version, which reaches the handler as the
`url_path` header: `/predictions/<model>/<version>/v1/completions`. So the `openai` client's
base URL is `http://host:8080/predictions/<model>/<version>/v1` and its API key the inference
token.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from handlers.engines.completions import MAX_MODEL_NAME, Completion, Piece, parse_body
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import JSON, GenerationProtocol, ModelFacts, is_json_object

# OpenAI fields with nothing more to do here (stream_options is read for include_usage); `model`
# goes on to the completion's reader, which checks it
IGNORED = ("user", "stream_options")
EVENT_STREAM = "text/event-stream"


@dataclass
class OpenAIWriter:
    """One request's answer in OpenAI's shape, piece by piece."""

    id_prefix: ClassVar[str]
    object_name: ClassVar[str]
    chunk_suffix: ClassVar[str] = ""  # a streamed chunk's object name adds this

    model: str
    stream: bool
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage only
    prompt_tokens: int = 0
    made: list[int] = field(default_factory=list[int])
    text: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def content_type(self) -> str:
        return EVENT_STREAM if self.stream else JSON

    def admitted(self, completion: Completion) -> None:
        self.prompt_tokens = len(completion.prompt_ids)

    def piece(self, piece: Piece) -> str:
        if piece.error is not None:  # as vLLM's server: an error object, in the stream's shape
            error = {"error": {"message": piece.error, "type": "InternalServerError", "code": 500}}
            if not self.stream:
                return json.dumps(error)
            return f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n"
        self.made += piece.token_ids
        self.text += piece.text
        if not self.stream:
            return json.dumps(self.whole(piece.finish_reason)) if piece.final else ""
        chunk = self.envelope([self.choice(piece.text, finish(piece.finish_reason), delta=True)])
        events: list[dict[str, Any]] = (
            [chunk] if piece.text or piece.token_ids or piece.final else []
        )
        if piece.final and self.include_usage:  # as OpenAI: choices [], then usage
            events.append({**self.envelope([]), "usage": self.usage()})
        return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + (
            "data: [DONE]\n\n" if piece.final else ""
        )

    def whole(self, finish_reason: str | None) -> dict[str, Any]:
        return {
            **self.envelope([self.choice(self.text, finish(finish_reason))]),
            "usage": self.usage(),
        }

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = self.chunk_suffix if self.stream else ""
        return {
            "id": f"{self.id_prefix}-{self.id}",
            "object": self.object_name + chunk,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def choice(self, text: str, finish_reason: str | None, delta: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def usage(self) -> dict[str, int]:
        made = len(self.made)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": made,
            "total_tokens": self.prompt_tokens + made,
        }


def finish(reason: str | None) -> str | None:
    """OpenAI's finish reasons: a cancelled request stopped."""
    return {"cancelled": "stop"}.get(reason, reason) if reason else reason


class OpenAIProtocol(GenerationProtocol):
    title: ClassVar[str]  # as messages name the request
    prompt_field: ClassVar[str]  # what holds the prompt: prompt, or messages
    other_field: ClassVar[str]  # the other API's prompt field, refused by name
    writer: ClassVar[type[OpenAIWriter]]

    def read(self, body: Any, model: ModelFacts) -> tuple[dict[str, Any], OpenAIWriter]:
        fields = parse_body(body)
        n = fields.pop("n", 1)
        if type(n) is not int or n != 1:
            raise RequestError(f"n: {str(n)[:20]} choices are not served; ask for n: 1")
        if self.other_field in fields:
            raise RequestError(
                f"{self.other_field}: not a field of a {self.title} request; "
                f"send {self.prompt_field}"
            )
        if self.prompt_field not in fields:
            raise RequestError(f"{self.prompt_field}: missing; a {self.title} request needs it")
        prompt = self.prompt(fields.pop(self.prompt_field), fields, model)
        name = fields.get("model")  # the completion's reader refuses a long or odd one
        options = fields.get("stream_options")
        writer = self.writer(
            name[:MAX_MODEL_NAME] if isinstance(name, str) else "",
            fields.get("stream") is True,
            is_json_object(options) and bool(options.get("include_usage")),
        )
        for ignored in IGNORED:
            fields.pop(ignored, None)
        return {**fields, "prompt": prompt}, writer

    def prompt(self, given: Any, fields: dict[str, Any], model: ModelFacts) -> Any:
        """The prompt field's value as the completion's prompt (fields may be adjusted)."""
        raise NotImplementedError
