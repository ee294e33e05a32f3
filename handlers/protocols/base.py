"""What a generation protocol is: how one request's body becomes the completion fields that
handlers/engines/completions.py checks, and how each piece the engine makes
(handlers/engines/generating.py)
is written back in the protocol's shape. Runtime-neutral: an adapter (TorchServe's handler,
Triton's model) only moves bytes between its runtime and a protocol, found by name or route
in handlers/protocols/__init__.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from handlers.engines.completions import Completion, Piece

JSON = "application/json"


@dataclass(frozen=True)
class ModelFacts:
    """What a protocol may need of the model to read a request."""

    chat_template: str | None  # Jinja, from the tokenizer folder's tokenizer_config.json
    max_prompt_bytes: int  # task.generation.max_prompt_bytes, checked before any rendering


class Writer(Protocol):
    """One request's answer, piece by piece."""

    def content_type(self) -> str: ...

    def admitted(self, completion: Completion) -> None:
        """The request was checked and queued (its prompt tokens are known)."""

    def piece(self, piece: Piece) -> Any:
        """What this piece adds to the response: body text ("" sends nothing now), or for a
        tensor protocol {output name: array} (None sends nothing now)."""
        ...


class GenerationProtocol:
    name: ClassVar[str]  # also the request-format label of the model's metrics
    route: ClassVar[str | None]  # on TorchServe: the URL after the model's version; None: none

    def read(self, body: Any, model: ModelFacts) -> tuple[dict, Writer]:
        """The request -> (completion fields to check and run, its answer's writer)."""
        raise NotImplementedError
