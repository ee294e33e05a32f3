"""OpenAI's completions and chat completions API over a generation model, runtime-neutral: the
request read into a completion body (handlers/completions.py checks it), and each piece of the
answer written as OpenAI writes it (server-sent events ending with `data: [DONE]` when
streaming, one JSON object otherwise, `usage` in both).

On TorchServe the route is the URL after the model's version, which reaches the handler as the
`url_path` header: `/predictions/<model>/<version>/v1/completions`. So the `openai` client's
base URL is `http://host:8080/predictions/<model>/<version>/v1` and its API key the inference
token.

Chat messages become one prompt through the chat template of the model's
tokenizer_config.json when it has one, else through a plain one, one line per message and the
answer's turn last: "system: ...\\nuser: ...\\nassistant:".
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.completions import MAX_MODEL_NAME, Piece, parse_body
from handlers.processing import RequestError

ROUTES = {"v1/completions": "completion", "v1/chat/completions": "chat"}
# OpenAI fields with nothing more to do here (stream_options is read for include_usage); `model`
# goes on to the completion's reader, which checks it
IGNORED = ("user", "stream_options")
ROLES = ("system", "user", "assistant")
EVENT_STREAM = "text/event-stream"


def route_kind(url_path: str | None) -> str | None:
    """'completion' or 'chat' for an OpenAI route; None for the model's own (no path)."""
    path = (url_path or "").strip("/")
    if not path:
        return None
    if path not in ROUTES:
        raise RequestError(
            f"unknown route {path!r}; this model answers {sorted(ROUTES)} after its version, "
            "e.g. /predictions/<model>/<version>/v1/completions"
        )
    return ROUTES[path]


def chat_template(folder: Path) -> str | None:
    """The Jinja chat template of tokenizer_config.json, if the model has one."""
    config = folder / "tokenizer_config.json"
    if not config.exists():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("chat_template")


def chat_prompt(messages: Any, template: str | None, max_bytes: int) -> str:
    """The messages as one prompt; their size is checked before the template renders them."""
    if not isinstance(messages, list) or not messages:
        raise RequestError('messages: give a list, e.g. [{"role": "user", "content": "Hi"}]')
    size = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(f"messages[{i}].role: expected one of {list(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise RequestError(f"messages[{i}].content: expected text")
        size += len(message["content"]) + len(message["role"])
        if size > max_bytes:  # characters: at most the bytes the prompt will have
            raise RequestError(
                f"messages: over this model's limit of {max_bytes} bytes of prompt "
                "(task.generation.max_prompt_bytes); send less",
                "size",
            )
    if template is not None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        render = ImmutableSandboxedEnvironment().from_string(template).render
        return render(messages=messages, add_generation_prompt=True)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


@dataclass
class OpenAIAnswer:
    """One request's answer in OpenAI's shape, piece by piece."""

    kind: str  # completion | chat
    model: str
    stream: bool
    prompt_tokens: int = 0
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage only
    made: list[int] = field(default_factory=list)
    text: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def piece(self, piece: Piece) -> str:
        """What this piece adds to the response body ("" for an unfinished non-stream one)."""
        if piece.error is not None:  # as vLLM's server: an error object, in the stream's shape
            error = {"error": {"message": piece.error, "type": "InternalServerError", "code": 500}}
            if not self.stream:
                return json.dumps(error)
            return f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n"
        self.made += piece.token_ids
        self.text += piece.text
        if not self.stream:
            return json.dumps(self.whole(piece.finish_reason)) if piece.final else ""
        chunk = self.envelope([self.choice(piece.text, piece.finish_reason, delta=True)])
        events = [chunk] if piece.text or piece.token_ids or piece.final else []
        if piece.final and self.include_usage:  # as OpenAI: choices [], then usage
            events.append({**self.envelope([]), "usage": self.usage()})
        return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + (
            "data: [DONE]\n\n" if piece.final else ""
        )

    def whole(self, finish_reason: str | None) -> dict:
        return {**self.envelope([self.choice(self.text, finish_reason)]), "usage": self.usage()}

    def envelope(self, choices: list) -> dict:
        kinds = {"completion": ("cmpl", "text_completion"), "chat": ("chatcmpl", "chat.completion")}
        prefix, obj = kinds[self.kind]
        chunk = ".chunk" if self.stream and self.kind == "chat" else ""
        return {
            "id": f"{prefix}-{self.id}",
            "object": obj + chunk,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def choice(self, text: str, finish_reason: str | None, delta: bool = False) -> dict:
        reason = {"cancelled": "stop"}.get(finish_reason, finish_reason)
        if self.kind == "completion":
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        key = "delta" if delta else "message"
        return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": reason}

    def usage(self) -> dict:
        made = len(self.made)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": made,
            "total_tokens": self.prompt_tokens + made,
        }


def read_openai(
    kind: str, body: Any, template: str | None, max_bytes: int
) -> tuple[dict, OpenAIAnswer]:
    """An OpenAI request -> (the completion body to check and run, its answer's writer)."""
    fields = parse_body(body)
    n = fields.get("n", 1)
    if type(n) is not int or n != 1:
        raise RequestError(f"n: {str(n)[:20]} choices are not served; ask for n: 1")
    prompt_field = "prompt" if kind == "completion" else "messages"
    other = "messages" if kind == "completion" else "prompt"
    if other in fields:
        raise RequestError(f"{other}: not a field of a {kind} request; send {prompt_field}")
    if prompt_field not in fields:
        raise RequestError(f"{prompt_field}: missing; a {kind} request needs it")
    prompt = fields.pop(prompt_field)
    if kind == "chat":
        prompt = chat_prompt(prompt, template, max_bytes)
        if "max_completion_tokens" in fields:
            fields["max_tokens"] = fields.pop("max_completion_tokens")
    elif isinstance(prompt, list) and len(prompt) == 1:  # the client's list of one prompt
        prompt = prompt[0]
    fields.pop("n", None)
    model = fields.get("model")  # the completion's reader refuses a long or odd one
    name = model[:MAX_MODEL_NAME] if isinstance(model, str) else ""
    answer = OpenAIAnswer(kind, name, fields.get("stream") is True)
    options = fields.get("stream_options")
    answer.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    for name in IGNORED:
        fields.pop(name, None)
    return {**fields, "prompt": prompt}, answer
