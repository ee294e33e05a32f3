"""Task kinds as the servers see them, found by the spec's `task.kind` through SERVING_TASKS: what
a task's spec section must hold, which engine runs the model, and what an answer carries beside
the model's outputs. How each kind is trained, exported, gated, verified and measured is its
build side, scripts/tasks/<kind>.py, found through that package's registry by the same name.

A new kind that serves like an existing one (its outputs as they are) is a subclass here and a
line in SERVING_TASKS; only a kind that answers differently adds behaviour.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, ClassVar

import numpy as np
from pydantic import AfterValidator, WithJsonSchema

from handlers.preprocessing.processing import class_scores, top_labels


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

    def section_problems(self, labels: Any, generation: Any) -> list[str]:
        """What the spec's `task:` section lacks or holds that this kind does not take."""
        if generation is not None:
            return [f"generation: only kind generation takes it, not {self.name}"]
        return []

    def label(self, answers: list[dict], outputs: list[np.ndarray], task: Any) -> None:
        """Adds what this kind answers beside the outputs to each example's answer."""

    def probe_request(self, golden_row: Callable[[], dict]) -> dict:
        """One request's JSON body that a model of this kind must answer: a package is tried
        with it before it is served. `golden_row`: {input name: one golden row as lists}."""
        return {"tensors": golden_row()}


class Raw(ServingTask):
    """The model's output tensors, as they are."""

    name = "raw"


class Regression(Raw):
    name = "regression"


class Embedding(Raw):
    name = "embedding"


class Classification(ServingTask):
    """Scores per class: each example is answered with its top label and score, and the top k."""

    name = "classification"
    labelled = True

    def section_problems(self, labels: Any, generation: Any) -> list[str]:
        problems = super().section_problems(labels, generation)
        if not labels:
            problems.append("classification needs labels: a text file with one label per line")
        return problems

    def label(self, answers: list[dict], outputs: list[np.ndarray], task: Any) -> None:
        scores = class_scores(outputs[0], task.output)
        for answer, labelled in zip(answers, top_labels(scores, task.labels, task.top_k)):
            answer.update(labelled)


class Generation(ServingTask):
    """A causal language model: text in, tokens decoded and streamed."""

    name = "generation"
    engine = "generate"
    pretrained = True

    def section_problems(self, labels: Any, generation: Any) -> list[str]:
        if generation is None:
            return [
                "generation: kind generation needs it (request defaults and limits, e.g. "
                "{max_tokens: 32, max_tokens_limit: 128})"
            ]
        return []

    def probe_request(self, golden_row: Callable[[], dict]) -> dict:
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
