"""A recurrent model over sequences whose length varies from request to request."""

from __future__ import annotations

import torch
from torch import nn


class SequenceGRU(nn.Module):
    """[batch, time, features] with a dynamic time axis -> per-class scores from the last step."""

    def __init__(self, features: int = 4, hidden: int = 32, classes: int = 3):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(steps)
        return self.head(hidden[-1])
