"""ExportedProgram: torch.export's graph, saved as a .pt2 and run by torch in Python."""

from __future__ import annotations

from pathlib import Path

from handlers.formats.base import Exportable
from handlers.formats.torch_file import TorchFile, dynamic_shapes


def exported_program(model: Exportable):
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

    def load(self, source, path, plain):
        import torch

        return torch.export.load(source).module()
