"""OpenAI's chat completions API (`.../v1/chat/completions`): `messages` in, one prompt made of
them through the chat template of the model's tokenizer_config.json when it has one, else a
plain one (one line per message and the answer's turn last: "system: ...\\nuser: ...\\n
assistant:"); `message` choices out (`delta` when streaming). `logprobs: true` with
`top_logprobs` (0..20) answers each token's log-probability in chat's shape (token, logprob,
bytes, top_logprobs)."""

from __future__ import annotations

from typing import Any

from handlers.engines.completions import Logprob
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import ModelFacts, is_json_array, is_json_object
from handlers.protocols.openai_common import OpenAIProtocol, OpenAIWriter, rounded

ROLES = ("system", "user", "assistant")


class ChatWriter(OpenAIWriter):
    id_prefix = "chatcmpl"
    object_name = "chat.completion"
    chunk_suffix = ".chunk"

    def choice(
        self,
        index: int,
        text: str,
        finish_reason: str | None,
        logprobs: dict[str, Any] | None,
        delta: bool = False,
    ) -> dict[str, Any]:
        key = "delta" if delta else "message"
        return {
            "index": index,
            key: {"role": "assistant", "content": text},
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }

    def logprobs(self, scores: list[Logprob], offset: int) -> dict[str, Any]:
        return {"content": [token_entry(score) for score in scores]}


class OpenAIChat(OpenAIProtocol):
    name = "openai-chat"
    route = "v1/chat/completions"
    title = "chat"
    prompt_field, other_field = "messages", "prompt"
    writer = ChatWriter

    def prompt(self, given: Any, fields: dict[str, Any], model: ModelFacts) -> str:
        if "max_completion_tokens" in fields:  # chat's newer name for max_tokens
            fields["max_tokens"] = fields.pop("max_completion_tokens")
        return chat_prompt(given, model.chat_template, model.max_prompt_bytes)

    def options(self, fields: dict[str, Any], writer: OpenAIWriter) -> None:
        """Chat asks `logprobs: true` and how many top tokens in `top_logprobs`."""
        wanted, top = fields.pop("logprobs", False), fields.pop("top_logprobs", None)
        if type(wanted) is not bool:
            raise RequestError(f"logprobs: expected true or false, got {str(wanted)[:20]}")
        if top is not None and not wanted:
            raise RequestError("top_logprobs: give it with logprobs: true")
        if wanted:
            fields["logprobs"] = 0 if top is None else top


def token_entry(score: Logprob) -> dict[str, Any]:
    """A token in chat's logprobs: its text, log-probability, UTF-8 bytes and top tokens."""
    return {
        **entry(score.token, score.logprob if score.logprob is not None else 0.0),
        "top_logprobs": [entry(text, value) for text, value in score.top],
    }


def entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": rounded(logprob), "bytes": list(token.encode("utf-8"))}


def chat_prompt(messages: Any, template: str | None, max_bytes: int) -> str:
    """The messages as one prompt; their size is checked before the template renders them."""
    if not is_json_array(messages) or not messages:
        raise RequestError('messages: give a list, e.g. [{"role": "user", "content": "Hi"}]')
    size = 0
    for i, message in enumerate(messages):
        if not is_json_object(message) or message.get("role") not in ROLES:
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
