"""OpenAI's completions API (`.../v1/completions`): `prompt` in, `text` choices out; `logprobs`
(the top tokens to show, 0..20) in its shape (tokens, token_logprobs, top_logprobs,
text_offset), and `echo` (the prompt before the text; with logprobs, its tokens' too, the
first without one)."""

from __future__ import annotations

from typing import Any

from handlers.engines.completions import Logprob
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import ModelFacts, is_json_array
from handlers.protocols.openai_common import OpenAIProtocol, OpenAIWriter, rounded


class CompletionsWriter(OpenAIWriter):
    id_prefix = "cmpl"
    object_name = "text_completion"

    def choice(
        self,
        index: int,
        text: str,
        finish_reason: str | None,
        logprobs: dict[str, Any] | None,
        delta: bool = False,
    ) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}

    def logprobs(self, scores: list[Logprob], offset: int) -> dict[str, Any]:
        """As vLLM: each token's text, log-probability, top tokens (the chosen one among them)
        and where it starts in the text."""
        tokens: list[str] = []
        chosen: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        for score in scores:
            offsets.append(offset)
            tokens.append(score.token)
            offset += len(score.token)
            if score.logprob is None:  # the prompt's first token: nothing came before it
                chosen.append(None)
                tops.append(None)
                continue
            chosen.append(rounded(score.logprob))
            top = {text: rounded(value) for text, value in score.top}
            tops.append({**top, score.token: rounded(score.logprob)})
        return {
            "tokens": tokens,
            "token_logprobs": chosen,
            "top_logprobs": tops,
            "text_offset": offsets,
        }


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

    def options(self, fields: dict[str, Any], writer: OpenAIWriter) -> None:
        echo = fields.pop("echo", False)
        if type(echo) is not bool:
            raise RequestError(f"echo: expected true or false, got {str(echo)[:20]}")
        writer.echo = echo
        if echo and fields.get("logprobs") is not None:  # the prompt's tokens scored too
            fields["prompt_logprobs"] = fields["logprobs"]
