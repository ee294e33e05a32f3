"""task: {kind: regression}: trained with mean squared error, answered with its outputs."""

from scripts.tasks.base import OnePass


class Regression(OnePass):
    name = "regression"
