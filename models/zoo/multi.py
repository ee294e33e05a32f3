"""Models with several inputs and outputs, per-sample scalars and unusual dtypes."""

from __future__ import annotations

import torch
from torch import nn


class TwoTower(nn.Module):
    """Dense features plus a per-sample id (`shape: [-1]`) -> class scores and an embedding.

    The output is named `embedding` like the submodule: ONNX export once collided on that name.
    """

    def __init__(self, features: int = 8, items: int = 100, dim: int = 16, classes: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(items, dim)
        self.dense = nn.Linear(features, dim)
        self.head = nn.Linear(dim, classes)

    def forward(
        self, dense: torch.Tensor, item_id: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.tanh(self.dense(dense) + self.embedding(item_id))
        return self.head(embedding), embedding


class MixedDtypes(nn.Module):
    """An input of every dtype the spec knows (bool, int8/16/32, uint8, float16/64); a dict of
    outputs in float16, bool, int32 and float32 (the exporters flatten a dict in insertion
    order: the spec lists them so)."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.scale = nn.Linear(width, width)

    def forward(
        self,
        mask: torch.Tensor,
        counts: torch.Tensor,
        pixels: torch.Tensor,
        half: torch.Tensor,
        offset: torch.Tensor,
        small: torch.Tensor,
        medium: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        shift = offset.float() + small.float() / 128.0 + medium.float() / 32768.0
        values = counts.float() + pixels.float() / 255.0 + half.float() + shift
        values = torch.where(mask, self.scale(values), torch.zeros_like(values))
        return {
            "half_out": values.half(),
            "positive": values > 0,
            "count_sum": counts.sum(dim=1, keepdim=True, dtype=torch.int32),
            "total": values.sum(dim=1, keepdim=True),
        }
