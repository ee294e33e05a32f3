"""Task kinds, build side, by the spec's `task.kind`: one module per kind, one line each here.
The serving side of the same kinds is handlers/tasks.py (SERVING_TASKS, the same names)."""

from __future__ import annotations

from scripts.spec import ModelSpec
from scripts.tasks.base import OnePass
from scripts.tasks.classification import Classification
from scripts.tasks.embedding import Embedding
from scripts.tasks.generation import Generation
from scripts.tasks.raw import Raw
from scripts.tasks.regression import Regression

TASKS: dict[str, OnePass] = {
    task.name: task for task in (Classification(), Regression(), Embedding(), Raw(), Generation())
}


def task_of(spec: ModelSpec) -> OnePass:
    return TASKS[spec.task.kind]
