"""tabular_mlp: breast-cancer diagnosis from 30 measurements (scikit-learn's bundled table)."""

from __future__ import annotations

import json

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

from handlers.preprocessing.processing import standardize
from scripts.pipeline.training_data import TrainingData


class TabularMLP(nn.Module):
    def __init__(self, in_features: int = 30, hidden: int = 128):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def load_data(seed: int, preprocess) -> TrainingData:
    table = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        table.data, table.target, test_size=0.2, random_state=seed, stratify=table.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    stats = {"mean": mean.tolist(), "std": std.tolist(), "features": list(table.feature_names)}
    rows = {f"row_{i}.json": json.dumps({"inputs": x_test[i].tolist()}).encode() for i in range(3)}
    return TrainingData(
        x_train=standardize(x_train, mean, std),
        y_train=y_train.astype(np.float32)[:, None],
        x_test=standardize(x_test, mean, std),
        y_test=y_test.astype(np.float32)[:, None],
        assets={"standardize.json": json.dumps(stats)},
        requests=rows,
    )
