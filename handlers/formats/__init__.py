"""The export formats, one module each: its name, artifact file, export, runner, encryption
support and Triton backend (base.py says what a format owns). A new format is a module here and
a line in FORMATS; the spec accepts exactly these names (handlers/plan.py)."""

from __future__ import annotations

from handlers.formats.aoti import Aoti
from handlers.formats.base import Format
from handlers.formats.exported_program import ExportedProgram
from handlers.formats.onnx import Onnx
from handlers.formats.onnx_int8 import OnnxInt8
from handlers.formats.pretrained import Pretrained
from handlers.formats.torchscript import TorchScript
from handlers.formats.torchscript_frozen import TorchScriptFrozen

# In this order the spec's error messages list them and `formats: auto` exports them.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        TorchScript(),
        Onnx(),
        Aoti(),
        ExportedProgram(),
        OnnxInt8(),
        Pretrained(),
        TorchScriptFrozen(),
    )
}
FORMAT_NAMES = tuple(FORMATS)


def format_of(name: object) -> Format:
    """The format called `name`; ValueError naming the known ones otherwise (a value that is
    not a string included)."""
    if isinstance(name, str) and name in FORMATS:
        return FORMATS[name]
    raise ValueError(f"unknown model format {name!r}; expected one of {sorted(FORMATS)}")
