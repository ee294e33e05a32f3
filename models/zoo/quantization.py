"""A model int8 quantisation ruins, for the accuracy gate's test."""

from __future__ import annotations

import torch
from torch import nn


class OutlierLinear(nn.Module):
    """One huge weight per class on an input that is always zero: fp32 ignores it, while int8
    spends each channel's whole range on it and rounds every weight that matters to zero."""

    def __init__(self, features: int = 16, classes: int = 4):
        super().__init__()
        self.linear = nn.Linear(features, classes)
        with torch.no_grad():
            self.linear.weight[:, 0] = 1000.0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        silenced = torch.cat([torch.zeros_like(features[:, :1]), features[:, 1:]], dim=1)
        return self.linear(silenced)
