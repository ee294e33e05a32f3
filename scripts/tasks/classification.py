"""task: {kind: classification}: scores per class, trained with cross-entropy (or the binary
form for one score column), answered with label and score, measured by accuracy."""

from __future__ import annotations

import numpy as np
from torch import nn

from handlers.preprocessing.processing import class_scores
from scripts.spec import ModelSpec
from scripts.tasks.base import OnePass


class Classification(OnePass):
    name = "classification"

    def loss(self, spec: ModelSpec, outputs: int) -> nn.Module:
        probabilities = spec.task.output == "probabilities"
        if outputs == 1:
            return nn.BCELoss() if probabilities else nn.BCEWithLogitsLoss()
        return nn.NLLLoss() if probabilities else nn.CrossEntropyLoss()

    def held_out_metrics(self, spec: ModelSpec, output: np.ndarray, y: np.ndarray) -> dict:
        predicted = class_scores(output, spec.task.output).argmax(axis=1)
        return {
            "held_out_accuracy": float((predicted == y.reshape(len(predicted))).mean()),
            "held_out_examples": len(predicted),
        }
