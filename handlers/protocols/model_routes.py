"""Routes of a generation model answered at once, without decoding, as vLLM's server answers
them: `v1/models` and `v1/models/<id>` (what `client.models.list()` / `.retrieve()` ask),
`tokenize` ({"prompt"} or {"messages"} -> {"count", "max_model_len", "tokens"}) and
`detokenize` ({"tokens"} -> {"prompt"}). On TorchServe they sit after the model's version like
the others (/predictions/<model>/<version>/v1/models); errors come in OpenAI's shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from handlers.engines.completions import parse_body
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import ModelFacts, is_json_array
from handlers.protocols.openai_chat import chat_prompt
from handlers.protocols.openai_common import error_body

MAX_TOKENS_TO_DETOKENIZE = 1 << 16


class NotFound(RequestError):
    """A name the server does not serve."""

    status = 404


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True)
class ServedModel:
    """What these routes tell of the model."""

    name: str
    context_length: int
    vocabulary: int
    tokenizer: Tokenizer
    facts: ModelFacts
    created: int = field(default_factory=lambda: int(time.time()))

    def card(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "torchship",
            "root": self.name,
            "parent": None,
            "max_model_len": self.context_length,
        }


class ModelRoute:
    name: ClassVar[str]  # the request format in the model's metrics

    def matches(self, path: str) -> bool:
        raise NotImplementedError

    def answer(self, path: str, body: Any, model: ServedModel) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> str:
        return error_body(status, message)


class Models(ModelRoute):
    name = "openai-models"

    def matches(self, path: str) -> bool:
        return path == "v1/models" or path.startswith("v1/models/")

    def answer(self, path: str, body: Any, model: ServedModel) -> dict[str, Any]:
        asked = path.removeprefix("v1/models").strip("/")
        if not asked:
            return {"object": "list", "data": [model.card()]}
        if asked != model.name:
            raise NotFound(
                f"model: the model `{asked[:64]}` does not exist; this route serves `{model.name}`"
            )
        return model.card()


class Tokenize(ModelRoute):
    name = "tokenize"

    def matches(self, path: str) -> bool:
        return path == "tokenize"

    def answer(self, path: str, body: Any, model: ServedModel) -> dict[str, Any]:
        fields = parse_body(body)
        if "messages" in fields:
            text = chat_prompt(
                fields["messages"], model.facts.chat_template, model.facts.max_prompt_bytes
            )
        else:
            text = fields.get("prompt")
            if not isinstance(text, str):
                raise RequestError('prompt: give the text to tokenize, e.g. {"prompt": "Hi"}')
            if len(text.encode("utf-8", "surrogatepass")) > model.facts.max_prompt_bytes:
                raise RequestError(
                    f"prompt: over this model's limit of {model.facts.max_prompt_bytes} bytes",
                    "size",
                )
        tokens = model.tokenizer.encode(text)
        return {"count": len(tokens), "max_model_len": model.context_length, "tokens": tokens}


class Detokenize(ModelRoute):
    name = "detokenize"

    def matches(self, path: str) -> bool:
        return path == "detokenize"

    def answer(self, path: str, body: Any, model: ServedModel) -> dict[str, Any]:
        tokens = parse_body(body).get("tokens")
        if not is_json_array(tokens) or len(tokens) > MAX_TOKENS_TO_DETOKENIZE:
            raise RequestError(
                f"tokens: give a list of at most {MAX_TOKENS_TO_DETOKENIZE} token ids"
            )
        for i, token in enumerate(tokens):
            if type(token) is not int or not 0 <= token < model.vocabulary:
                raise RequestError(
                    f"tokens[{i}]: {str(token)[:20]} is not a token id in 0..{model.vocabulary - 1}"
                )
        return {"prompt": model.tokenizer.decode(tokens)}


MODEL_ROUTES: tuple[ModelRoute, ...] = (Models(), Tokenize(), Detokenize())


def model_route(url_path: str | None) -> ModelRoute | None:
    path = (url_path or "").strip("/")
    return next((route for route in MODEL_ROUTES if route.matches(path)), None)
