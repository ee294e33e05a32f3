"""AOTInductor: the ExportedProgram compiled ahead of time into a .pt2 package."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

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
        from torch._inductor import aoti_compile_and_package  # pyright: ignore[reportUnknownVariableType]  its deprecated parameters are untyped

        aoti_compile_and_package(exported_program(model), package_path=str(path))

    def load(self, source: str | io.BytesIO, path: Path, plain: bytes | None) -> Callable[..., Any]:
        from torch._inductor import aoti_load_package

        if plain is None:
            return aoti_load_package(str(path))
        # the package loader takes a path only: a memory-backed file, no plaintext on disk
        with in_memory_file(plain, path.name) as memory_path:
            return aoti_load_package(memory_path)
