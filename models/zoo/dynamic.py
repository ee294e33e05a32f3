"""Models whose shapes or control flow depend on the data, as users write them."""

from __future__ import annotations

import torch
from torch import nn


class PositiveValues(nn.Module):
    """The transformed values above zero: the output's length depends on the input's values,
    so no runtime can batch it (max_batch_size 0) and the answer is the whole output."""

    def __init__(self, features: int = 8):
        super().__init__()
        self.scale = nn.Linear(features, features)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        transformed = self.scale(values)
        return transformed[transformed > 0]


class BatchSizeBranch(nn.Module):
    """Python control flow on the batch size: TorchScript tracing records it, torch.export (and
    so ONNX and AOTInductor) cannot export it for a dynamic batch axis."""

    def __init__(self, features: int = 30):
        super().__init__()
        self.linear = nn.Linear(features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[0] > 2:
            return torch.sigmoid(self.linear(features))
        return torch.sigmoid(self.linear(features * 1.0))


class MaskedMean(nn.Module):
    """Token embeddings averaged over a mask of the same length: two inputs whose dynamic axes
    must be equal (torch.export needs to be told so: batching.pad.mask does)."""

    def __init__(self, vocab: int = 50, dim: int = 8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).float()
        return (self.embedding(ids) * weights).sum(1) / weights.sum(1).clamp_min(1.0)
