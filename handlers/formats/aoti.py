"""AOTInductor: the ExportedProgram compiled ahead of time into a .pt2 package."""

from __future__ import annotations

from pathlib import Path

from handlers.encryption import in_memory_file
from handlers.formats.base import Exportable
from handlers.formats.exported_program import exported_program
from handlers.formats.torch_file import TorchFile


class Aoti(TorchFile):
    name = "aoti"
    title = "AOTInductor"
    file = "model.aoti.pt2"
    auto = True

    def export(self, model: Exportable, path: Path) -> None:
        import torch

        torch._inductor.aoti_compile_and_package(exported_program(model), package_path=str(path))

    def load(self, source, path, plain):
        import torch

        if plain is None:
            return torch._inductor.aoti_load_package(str(path))
        # the package loader takes a path only: a memory-backed file, no plaintext on disk
        with in_memory_file(plain, path.name) as memory_path:
            return torch._inductor.aoti_load_package(memory_path)
