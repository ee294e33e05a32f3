"""Frozen TorchScript: parameters and attributes inlined as constants (torch.jit.freeze, with
conv-BN folding), saved as plain TorchScript that libtorch loads, so Triton's pytorch backend
serves it like torchscript. Our runner then applies torch.jit.optimize_for_inference at load:
its MKLDNN rewrites suit the machine that runs it and cannot be saved ("serialization is not
implemented following invoking optimize_for_inference")."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.formats.base import Exportable
from handlers.formats.torchscript import TorchScript, as_torchscript

if TYPE_CHECKING:
    import torch


class TorchScriptFrozen(TorchScript):
    name = "torchscript_frozen"
    title = "frozen TorchScript"
    file = "model.frozen.torchscript.pt"
    auto = False  # not proven on every zoo model yet: asked for by name

    def export(self, model: Exportable, path: Path) -> None:
        import torch

        with torch.inference_mode(False), torch.no_grad():
            torch.jit.freeze(as_torchscript(model).eval()).save(str(path))  # pyright: ignore[reportUnknownMemberType]  freeze() and save() have untyped parameters

    def load(
        self, source: str | io.BytesIO, path: Path, plain: bytes | None
    ) -> torch.jit.ScriptModule:
        import torch

        module = super().load(source, path, plain)
        with warnings.catch_warnings():  # its deprecation notice, on every load
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.optimize_for_inference(module)
