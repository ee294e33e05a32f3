"""What a protocol is, runtime-neutral: an adapter (TorchServe's handler, Triton's model) only
moves bytes between its runtime and a protocol, found by name or route in
handlers/protocols/__init__.py.

- A generation protocol: how one request's body becomes the completion fields that
  handlers/engines/completions.py checks, and how each piece the engine makes
  (handlers/engines/generating.py) is written back in the protocol's shape.
- A one-pass (forward) protocol: how one request's body becomes the model's own JSON that the
  serving core answers (handlers/engines/serving_core.py), and how those answers are written
  back in the protocol's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeGuard

from numpy.typing import NDArray

from handlers.engines.completions import Completion, Piece
from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError

JSON = "application/json"


def is_json_object(value: object) -> TypeGuard[dict[str, Any]]:
    """isinstance(value, dict), for a value read from JSON, whose objects' keys are strings."""
    return isinstance(value, dict)


def is_json_array(value: object) -> TypeGuard[list[Any]]:
    """isinstance(value, list), for a value read from JSON."""
    return isinstance(value, list)


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

    def read(self, body: Any, model: ModelFacts) -> tuple[dict[str, Any], Writer]:
        """The request -> (completion fields to check and run, its answer's writer)."""
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> str | None:
        """A refused request's body in this protocol's shape (None: the model's own)."""
        return None


def one_choice(fields: dict[str, Any], where: str) -> None:
    """Protocols whose answers have no choice index take n = 1 only."""
    n = fields.get("n", 1)
    if n != 1:
        raise RequestError(
            f"n: {str(n)[:20]} choices are answered on the OpenAI routes (v1/completions, "
            f"v1/chat/completions); {where} takes n: 1"
        )


class ForwardWriter(Protocol):
    """One request's answer to a one-pass model, in its protocol's shape."""

    name: ClassVar[str]  # the protocol's name: the request format in the model's metrics

    def answer(
        self, plan: ServingPlan, inputs: dict[str, NDArray[Any]], answers: list[dict[str, Any]]
    ) -> Any:
        """The JSON answer, from the examples' answers (handlers/preprocessing/pipeline.py's
        postprocess) and the request's model-input rows."""
        ...


class ForwardProtocol:
    """A protocol of one-pass models (handlers/engines/serving_core.py), beside the model's own
    JSON: reached on TorchServe at /predictions/<model>/<version>/<route>, for models whose task
    kind offers it (handlers/tasks.py, `protocols`) and that it `serves`."""

    name: ClassVar[str]
    route: ClassVar[str]
    needs: ClassVar[str]  # what a model needs to be served by it, for messages

    def serves(self, plan: ServingPlan) -> bool:
        raise NotImplementedError

    def read(self, body: Any, plan: ServingPlan) -> tuple[Any, ForwardWriter]:
        """The request -> (its body in the model's own JSON, its answer's writer)."""
        raise NotImplementedError
