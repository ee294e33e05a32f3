"""Drives each format's exporter (handlers/formats/) with values from the spec: written to a
file, checked to load in a fresh process when it calls ops beyond torch's own, and loaded back
as a runner for verification (scripts/pipeline/export.py verifies what they wrote).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import warnings
from pathlib import Path

from handlers.formats import format_of
from handlers.formats.base import Exportable
from handlers.runners import load_runner, op_namespaces
from scripts.pipeline.layout import PROJECT
from scripts.pipeline.verify import first_line
from scripts.spec import BuildError, ModelSpec


def dynamic_axes(tensors) -> list[list[int]]:
    return [[axis for axis, size in enumerate(t.shape) if size == -1] for t in tensors]


def exportable(spec: ModelSpec, reference, args) -> Exportable:
    return Exportable(
        module=reference,
        args=args,
        input_names=spec.tensor_names,
        output_names=spec.output_names,
        input_axes=dynamic_axes(spec.inputs),
        output_axes=dynamic_axes(spec.outputs),
        scripted=spec.source.is_torchscript,
    )


@contextlib.contextmanager
def quiet_exporters():
    """The exporters' deprecation chatter (and torchvision notices) would bury the step's output."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_format(spec: ModelSpec, fmt: str, reference, args, path: Path):
    """Export one format and load it back; BuildError naming the model, the format and why."""
    try:
        with quiet_exporters():
            format_of(fmt).export(exportable(spec, reference, args), path)
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
    if format_of(fmt).engine != "torch" or not op_namespaces(str(path)):
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
