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

from handlers.engines.completions import MAX_MODEL_NAME, Completion, Logprob, Piece, parse_body
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import JSON, GenerationProtocol, ModelFacts, is_json_object

# OpenAI fields with nothing more to do here (stream_options is read for include_usage); `model`
# goes on to the completion's reader, which checks it
IGNORED = ("user", "stream_options")
EVENT_STREAM = "text/event-stream"
LOWEST_LOGPROB = -9999.0  # as vLLM: JSON has no -Infinity
ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError"}


def error_body(status: int, message: str) -> str:
    """An error in OpenAI's shape (vLLM's types); `param` is the field a message starts with."""
    param = message.split(":", 1)[0] if ":" in message else None
    if param is not None and not param.replace("_", "").replace(".", "").isalnum():
        param = None
    kind = ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": status}})


def rounded(logprob: float) -> float:
    return max(logprob, LOWEST_LOGPROB)


@dataclass
class Choice:
    """One of a request's n choices as its pieces arrive."""

    text: str = ""
    made: int = 0  # tokens
    logprobs: list[Logprob] = field(default_factory=list[Logprob])
    finish_reason: str | None = None
    started: bool = False  # its first piece was written (echo puts the prompt there)


@dataclass
class OpenAIWriter:
    """One request's answer in OpenAI's shape, piece by piece, a choice per sequence."""

    id_prefix: ClassVar[str]
    object_name: ClassVar[str]
    chunk_suffix: ClassVar[str] = ""  # a streamed chunk's object name adds this

    model: str
    stream: bool
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage only
    echo: bool = False  # completions: the prompt before each choice's text
    prompt: str = ""
    prompt_tokens: int = 0
    n: int = 1
    with_logprobs: bool = False
    choices: dict[int, Choice] = field(default_factory=dict[int, Choice])
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def content_type(self) -> str:
        return EVENT_STREAM if self.stream else JSON

    def admitted(self, completion: Completion) -> None:
        self.prompt, self.prompt_tokens = completion.prompt, len(completion.prompt_ids)
        self.n, self.with_logprobs = completion.n, completion.sampling.logprobs is not None

    def piece(self, piece: Piece) -> str:
        if piece.error is not None:  # as vLLM's server: an error object, in the stream's shape
            error = error_body(500, piece.error)
            return f"data: {error}\n\ndata: [DONE]\n\n" if self.stream else error
        choice = self.choices.setdefault(piece.index, Choice())
        text, scores = piece.text, [*piece.prompt_logprobs, *piece.logprobs]
        if self.echo and not choice.started:
            text = self.prompt + text
        choice.started = True
        offset = len(choice.text)
        choice.text += text
        choice.made += len(piece.token_ids)
        choice.logprobs += scores
        choice.finish_reason = finish(piece.finish_reason)
        done = sum(c.finish_reason is not None for c in self.choices.values()) == self.n
        if not self.stream:
            return json.dumps(self.whole()) if done else ""
        made_something = text or piece.token_ids or piece.final
        events: list[dict[str, Any]] = []
        if made_something:
            shown = self.logprobs(scores, offset) if self.with_logprobs else None
            delta = self.choice(piece.index, text, choice.finish_reason, shown, delta=True)
            events.append(self.envelope([delta]))
        if done and self.include_usage:  # as OpenAI: choices [], then usage
            events.append({**self.envelope([]), "usage": self.usage()})
        ending = "data: [DONE]\n\n" if done else ""
        return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ending

    def whole(self) -> dict[str, Any]:
        choices = [
            self.choice(
                index,
                c.text,
                c.finish_reason,
                self.logprobs(c.logprobs, 0) if self.with_logprobs else None,
            )
            for index, c in sorted(self.choices.items())
        ]
        return {**self.envelope(choices), "usage": self.usage()}

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = self.chunk_suffix if self.stream else ""
        return {
            "id": f"{self.id_prefix}-{self.id}",
            "object": self.object_name + chunk,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def choice(
        self,
        index: int,
        text: str,
        finish_reason: str | None,
        logprobs: dict[str, Any] | None,
        delta: bool = False,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def logprobs(self, scores: list[Logprob], offset: int) -> dict[str, Any]:
        """The tokens' log-probabilities in this API's shape; `offset`: where the first token
        starts in the choice's text."""
        raise NotImplementedError

    def usage(self) -> dict[str, int]:
        made = sum(c.made for c in self.choices.values())
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
        self.options(fields, writer)
        for ignored in IGNORED:
            fields.pop(ignored, None)
        return {**fields, "prompt": prompt}, writer

    def prompt(self, given: Any, fields: dict[str, Any], model: ModelFacts) -> Any:
        """The prompt field's value as the completion's prompt (fields may be adjusted)."""
        raise NotImplementedError

    def options(self, fields: dict[str, Any], writer: OpenAIWriter) -> None:
        """This API's own fields (logprobs, echo) turned into the completion's."""

    def error_body(self, status: int, message: str) -> str:
        return error_body(status, message)
