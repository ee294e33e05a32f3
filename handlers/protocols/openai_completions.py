"""OpenAI's completions API (`.../v1/completions`): `prompt` in, `text` choices out."""

from __future__ import annotations

from typing import Any

from handlers.protocols.base import ModelFacts, is_json_array
from handlers.protocols.openai_common import OpenAIProtocol, OpenAIWriter


class CompletionsWriter(OpenAIWriter):
    id_prefix = "cmpl"
    object_name = "text_completion"

    def choice(self, text: str, finish_reason: str | None, delta: bool = False) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}


class OpenAICompletions(OpenAIProtocol):
    name = "openai-completion"
    route = "v1/completions"
    title = "completion"
    prompt_field, other_field = "prompt", "messages"
    writer = CompletionsWriter

    def prompt(self, given: Any, fields: dict[str, Any], model: ModelFacts) -> Any:
        if is_json_array(given) and len(given) == 1:  # the client's list of one prompt
            return given[0]
        return given
