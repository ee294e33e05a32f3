"""ExportedProgram: torch.export's graph, saved as a .pt2 and run by torch in Python."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.formats.base import Exportable
from handlers.formats.torch_file import TorchFile, dynamic_shapes

if TYPE_CHECKING:
    import torch


def exported_program(model: Exportable) -> torch.export.ExportedProgram:
    import torch

    return torch.export.export(model.module, model.args, dynamic_shapes=dynamic_shapes(model))


class ExportedProgram(TorchFile):
    name = "exported_program"
    title = "ExportedProgram"
    file = "model.exported.pt2"
    auto = True
    measured = False  # an interchange format: the bench and the tuner leave it out

    def export(self, model: Exportable, path: Path) -> None:
        import torch

        torch.export.save(exported_program(model), str(path))

    def load(self, source: str | io.BytesIO, path: Path, plain: bytes | None) -> torch.nn.Module:
        import torch

        return torch.export.load(source).module()
