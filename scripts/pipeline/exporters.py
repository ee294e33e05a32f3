"""One exporter per format: TorchScript (traced, or saved as given), ONNX, ExportedProgram and
AOTInductor, each written to a file and loaded back as a runner for verification
(scripts/pipeline/export.py drives them and verifies what they wrote).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from handlers.runners import load_runner, op_namespaces
from scripts.pipeline.layout import PROJECT
from scripts.pipeline.onnx_names import name_graph_io, rename_onnx_file
from scripts.pipeline.verify import first_line
from scripts.spec import BuildError, ModelSpec


def dynamic_shapes(spec: ModelSpec) -> tuple[dict, ...]:
    """Every -1 axis of every input is dynamic for torch.export. Dim.DYNAMIC (not named Dims)
    lets it infer what the model implies (ids and their mask share one length, a position table
    bounds it) and still fails if the model fixes an axis the spec says is dynamic."""
    return tuple(
        {axis: torch.export.Dim.DYNAMIC for axis, size in enumerate(t.shape) if size == -1}
        for t in spec.inputs
    )


def export_torchscript(spec: ModelSpec, reference, args, path: Path) -> None:
    if spec.source.is_torchscript:  # already TorchScript: save it as loaded
        reference.save(str(path))
        return
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(reference, args, strict=False)  # strict=False: dict outputs too
    traced.save(str(path))


def export_onnx(spec: ModelSpec, reference, args, path: Path) -> None:
    """torch.export-based ONNX, or the TorchScript-based exporter where torch.export cannot
    capture the model: a TorchScript source, or control flow it refuses (torchvision's detection
    post-processing), which tracing records as ONNX operators (NonZero, NonMaxSuppression)."""
    if spec.source.is_torchscript:  # the torch.export-based exporter cannot read TorchScript
        export_traced_onnx(spec, reference, args, path)
        return
    try:
        program = torch.onnx.export(
            reference, args, dynamo=True, dynamic_shapes=dynamic_shapes(spec), verbose=False
        )
    except Exception:  # verification below judges what the traced export gives instead
        export_traced_onnx(spec, reference, args, path)
        return
    name_graph_io(program.model, spec.tensor_names, spec.output_names)
    program.save(str(path), external_data=False)


def export_traced_onnx(spec: ModelSpec, reference, args, path: Path) -> None:
    """Exported under placeholder names, then renamed to the spec's (onnx_names.py: asking the
    exporter for them can collide with internal value names)."""
    inputs, outputs = spec.tensor_names, spec.output_names
    placeholders = [f"output__{i}" for i in range(len(outputs))]
    axes = {
        name: [a for a, d in enumerate(t.shape) if d == -1]
        for name, t in zip([*inputs, *placeholders], [*spec.inputs, *spec.outputs])
    }
    torch.onnx.export(
        reference,
        args,
        str(path),
        dynamo=False,
        dynamic_axes=axes,
        input_names=inputs,
        output_names=placeholders,
    )
    rename_onnx_file(path, inputs, outputs)


def exported_program(spec: ModelSpec, reference, args):
    return torch.export.export(reference, args, dynamic_shapes=dynamic_shapes(spec))


def export_aoti(spec: ModelSpec, reference, args, path: Path) -> None:
    torch._inductor.aoti_compile_and_package(
        exported_program(spec, reference, args), package_path=str(path)
    )


def export_exported_program(spec: ModelSpec, reference, args, path: Path) -> None:
    torch.export.save(exported_program(spec, reference, args), str(path))


@contextlib.contextmanager
def quiet_exporters():
    """The exporters' deprecation chatter (and torchvision notices) would bury the step's output."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


EXPORTERS = {
    "torchscript": export_torchscript,
    "onnx": export_onnx,
    "aoti": export_aoti,
    "exported_program": export_exported_program,
}


def export_format(spec: ModelSpec, fmt: str, reference, args, path: Path):
    """Export one format and load it back; BuildError naming the model, the format and why."""
    try:
        with quiet_exporters():
            EXPORTERS[fmt](spec, reference, args, path)
            loads_in_a_server(fmt, path)
            return load_runner(fmt, path, spec.tensor_names, output_names=spec.output_names)
    except Exception as exc:  # exporters raise many types; name the model and format
        raise BuildError(
            f"{spec.name}: {fmt} export failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


# A server's worker: a fresh interpreter in this environment that loads the file as the handlers do.
FRESH_LOAD = "import sys; from handlers.runners import load_runner; load_runner(*sys.argv[1:3], [])"


def loads_in_a_server(fmt: str, path: Path) -> None:
    """A file that calls ops beyond torch's own (torchvision::nms) loads here, where the model's
    code registered them; it must load in a fresh process too, as a server's worker does."""
    if fmt not in ("torchscript", "exported_program", "aoti") or not op_namespaces(str(path)):
        return
    done = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, fmt, str(path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"a server could not load it: {lines[-1] if lines else done.returncode}")
