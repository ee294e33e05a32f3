"""ONNX: torch.export-based, or TorchScript-based where torch.export cannot capture the model;
run by onnxruntime, in our handlers and by Triton's onnxruntime backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handlers.formats.base import Exportable, Format, Runner
from handlers.formats.torch_file import dynamic_shapes


def onnx_runner(source: str | bytes, threads: int | None) -> Runner:
    """An onnxruntime session on a file's path or its (decrypted) bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        outputs = session.run(None, {n: np.ascontiguousarray(inputs[n]) for n in names})
        return outputs  # pyright: ignore[reportReturnType]  dense outputs here: a list of arrays

    return run


def export_traced_onnx(model: Exportable, path: Path) -> None:
    """Exported under placeholder names, then renamed to the spec's (onnx_names.py: asking the
    exporter for them can collide with internal value names)."""
    import torch

    from handlers.formats.onnx_names import rename_onnx_file

    inputs, outputs = model.input_names, model.output_names
    placeholders = [f"output__{i}" for i in range(len(outputs))]
    axes = dict(zip([*inputs, *placeholders], [*model.input_axes, *model.output_axes]))
    torch.onnx.export(  # pyright: ignore[reportUnknownMemberType]  some parameters untyped in torch
        model.module,
        model.args,
        str(path),
        dynamo=False,
        dynamic_axes=axes,
        input_names=inputs,
        output_names=placeholders,
    )
    rename_onnx_file(path, inputs, outputs)


class Onnx(Format):
    name = "onnx"
    title = "ONNX"
    file = "model.onnx"
    engine = "onnxruntime"
    auto = True
    from_torchscript = True
    triton_backend = "onnxruntime"

    def export(self, model: Exportable, path: Path) -> None:
        """A TorchScript source, or control flow torch.export refuses (torchvision's detection
        post-processing), goes through the TorchScript-based exporter, which records it as ONNX
        operators (NonZero, NonMaxSuppression)."""
        import torch

        from handlers.formats.onnx_names import name_graph_io

        if model.scripted:  # the torch.export-based exporter cannot read TorchScript
            export_traced_onnx(model, path)
            return
        try:
            program = torch.onnx.export(  # pyright: ignore[reportUnknownMemberType]  as above
                model.module,
                model.args,
                dynamo=True,
                dynamic_shapes=dynamic_shapes(model),
                verbose=False,
            )
        except Exception:  # the build's verification judges what the traced export gives
            export_traced_onnx(model, path)
            return
        assert program is not None  # dynamo=True returns the program (typed as optional)
        name_graph_io(program.model, model.input_names, model.output_names)
        program.save(str(path), external_data=False)  # pyright: ignore[reportUnknownMemberType]  its path type is os.PathLike without an argument

    def runner(
        self,
        path: str | Path,
        input_names: list[str],
        threads: int | None,
        output_names: list[str] | None,
        plain: bytes | None,
    ) -> Runner:
        return onnx_runner(str(path) if plain is None else plain, threads)
