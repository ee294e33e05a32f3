"""Task kinds as the servers see them, found by the spec's `task.kind` through SERVING_TASKS: what
a task's spec section must hold, which engine runs the model, and what an answer carries beside
the model's outputs. How each kind is trained, exported, gated, verified and measured is its
build side, scripts/tasks/<kind>.py, found through that package's registry by the same name.

A new kind that serves like an existing one (its outputs as they are) is a subclass here and a
line in SERVING_TASKS; only a kind that answers differently adds behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import AfterValidator, WithJsonSchema

from handlers.preprocessing.processing import class_scores, l2_normalized, top_labels

if TYPE_CHECKING:
    from handlers.preprocessing.tensors import TensorSpec


class Batching(Protocol):
    """What a task's checks read of handlers/plan.py's Batching (the plan imports this module)."""

    @property
    def max_batch_size(self) -> int: ...


class ServingTask:
    name: ClassVar[str]
    # "forward": one pass per batch (handlers/engines/serving_core.py); "generate": decoded step by
    # step
    # in a shared batch (handlers/engines/generating.py). Each runtime adapter maps these to its
    # class.
    engine: ClassVar[str] = "forward"
    labelled: ClassVar[bool] = False  # answers name a label per example, from `task.labels`
    # served from a Hugging Face folder (format pretrained) by Python code: no tensor export, no
    # native Triton backend
    pretrained: ClassVar[bool] = False
    # fields of the spec's `task:` section only this kind takes: the other kinds refuse them
    fields: ClassVar[tuple[str, ...]] = ()
    # protocols (handlers/protocols/, by name) a one-pass model of this kind answers beside its
    # own JSON, each on its route after the model's version (if the protocol serves the model)
    protocols: ClassVar[tuple[str, ...]] = ()
    # answers OpenAI's completions and chat completions (the gateway routes them by the body's
    # `model`, scripts/gateway/)
    openai_completions: ClassVar[bool] = False

    def section_problems(self, task: Any) -> list[str]:
        """What the spec's `task:` section lacks or holds that this kind does not take."""
        return [
            f"{field}: only kind {other.name} takes it, not {self.name}"
            for other in SERVING_TASKS.values()
            for field in other.fields
            if field not in self.fields and getattr(task, field, None) is not None
        ]

    def entry_problems(self, task: Any, outputs: list[TensorSpec], batching: Batching) -> list[str]:
        """What this kind needs of the rest of the spec entry (its outputs and batching)."""
        return []

    def label(self, answers: list[dict[str, Any]], outputs: list[NDArray[Any]], task: Any) -> None:
        """Adds what this kind answers beside the outputs to each example's answer."""

    def probe_request(self, golden_row: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """One request's JSON body that a model of this kind must answer: a package is tried
        with it before it is served. `golden_row`: {input name: one golden row as lists}."""
        return {"tensors": golden_row()}


class Raw(ServingTask):
    """The model's output tensors, as they are."""

    name = "raw"


class Regression(Raw):
    name = "regression"


class Embedding(ServingTask):
    """One vector per example: the first output, or the one `task.embedding_output` names. Each
    example's answer carries it as "embedding", L2-normalised when `task.normalize` (its
    "outputs" stay as the model made them)."""

    name = "embedding"
    fields = ("embedding_output", "normalize", "min_cosine_similarity")
    protocols = ("openai-embeddings",)

    def entry_problems(self, task: Any, outputs: list[TensorSpec], batching: Batching) -> list[str]:
        names = [t.name for t in outputs]
        name = task.embedding_output or names[0]
        if name not in names:
            return [f"task.embedding_output: {name!r} is not an output (outputs: {names})"]
        shape = list(outputs[names.index(name)].shape)
        if batching.max_batch_size == 0 or len(shape) != 2:
            return [
                f"outputs: {name} {shape}: an embedding model answers one vector per example; "
                "give it shape [-1, dimensions] and batching.max_batch_size >= 1"
            ]
        return []

    def label(self, answers: list[dict[str, Any]], outputs: list[NDArray[Any]], task: Any) -> None:
        for answer in answers:
            given = answer["outputs"]
            vector = given[task.embedding_output or next(iter(given))]
            answer["embedding"] = (
                l2_normalized(np.array(vector)).tolist() if task.normalize else vector
            )


class Classification(ServingTask):
    """Scores per class: each example is answered with its top label and score, and the top k."""

    name = "classification"
    labelled = True

    def section_problems(self, task: Any) -> list[str]:
        problems = super().section_problems(task)
        if not task.labels:
            problems.append("classification needs labels: a text file with one label per line")
        return problems

    def label(self, answers: list[dict[str, Any]], outputs: list[NDArray[Any]], task: Any) -> None:
        scores = class_scores(outputs[0], task.output)
        for answer, labelled in zip(answers, top_labels(scores, task.labels, task.top_k)):
            answer.update(labelled)


class Generation(ServingTask):
    """A causal language model: text in, tokens decoded and streamed."""

    name = "generation"
    engine = "generate"
    pretrained = True
    openai_completions = True

    fields = ("generation",)

    def section_problems(self, task: Any) -> list[str]:
        if task.generation is None:
            return [
                "generation: kind generation needs it (request defaults and limits, e.g. "
                "{max_tokens: 32, max_tokens_limit: 128})"
            ]
        return super().section_problems(task)

    def probe_request(self, golden_row: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return {"prompt": "The", "max_tokens": 1}  # one decode step: its first token


SERVING_TASKS: dict[str, ServingTask] = {
    task.name: task for task in (Classification(), Regression(), Embedding(), Raw(), Generation())
}


def serving_task(kind: str) -> ServingTask:
    return SERVING_TASKS[kind]


def _known(kind: str) -> str:
    if kind not in SERVING_TASKS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(SERVING_TASKS)}")
    return kind


# The spec's and the plan's `task.kind`: a name in SERVING_TASKS.
TaskKind = Annotated[
    str, AfterValidator(_known), WithJsonSchema({"type": "string", "enum": list(SERVING_TASKS)})
]
