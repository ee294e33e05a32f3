"""Writes the zoo's model that arrives only as a traced TorchScript file (no class, no
checkpoint), the way a colleague hands one over. The spec names the file as `source.exported`;
`make train` calls `write` (the entry's `training.script`) to make it in place of the colleague.

The tagger reads one sequence `[time, 4]` (no batch axis) and answers a score per step and class
`[time, 3]` and one summary `[3]`. Traced at 6 steps, the time axis stays dynamic: nothing in
forward() reads a size into Python.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self, features: int = 4, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.gru = nn.GRU(features, hidden)  # unbatched input: [time, features]
        self.per_step = nn.Linear(hidden, classes)

    def forward(self, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, _ = self.gru(steps)
        tags = self.per_step(states)
        return tags, tags.mean(0)


def write(path: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        traced = torch.jit.trace(Tagger().eval(), (torch.randn(6, 4),))
    traced.save(str(path))
