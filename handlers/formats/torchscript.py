"""TorchScript: traced from the module (or saved as given when the source is TorchScript);
served by Triton's libtorch backend as well as ours."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, cast

from handlers.formats.base import Exportable
from handlers.formats.torch_file import TorchFile

if TYPE_CHECKING:
    import torch


def as_torchscript(model: Exportable) -> torch.jit.ScriptModule:
    """The model as TorchScript: the source itself, or traced at the example inputs."""
    import torch

    if model.scripted:
        return model.module
    with torch.inference_mode(False), torch.no_grad():
        # strict=False: dict outputs too
        traced = torch.jit.trace(model.module, model.args, strict=False)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  `func` is untyped in torch
        return cast("torch.jit.ScriptModule", traced)  # torch types trace() as a Graph too


class TorchScript(TorchFile):
    name = "torchscript"
    title = "TorchScript"
    file = "model.torchscript.pt"
    auto = True
    from_torchscript = True
    triton_backend = "pytorch"

    def export(self, model: Exportable, path: Path) -> None:
        as_torchscript(model).save(str(path))

    def load(
        self, source: str | io.BytesIO, path: Path, plain: bytes | None
    ) -> torch.jit.ScriptModule:
        import torch

        module = torch.jit.load(source, map_location="cpu")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  load() is untyped in torch
        return cast("torch.jit.ScriptModule", module).eval()
