"""The contract between a model's training-data function and the build's train step: part of
the tool, so a user's own `models/` package never collides with the examples' one."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainingData:
    """What a spec's `training.data` function returns.

    x_* are already pre-processed model inputs (the same functions the servers use), y_* the
    targets. `assets` are files the servers need for pre-processing (written beside the
    checkpoint); `requests` are raw example requests (written under `requests/`) for docs and
    end-to-end checks.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    assets: dict[str, str] = field(default_factory=dict)
    requests: dict[str, bytes] = field(default_factory=dict)
