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
from handlers.formats.pretrained_int8 import PretrainedInt8
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
        PretrainedInt8(),
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


def folder_format(name: object) -> Pretrained:
    """The language-model folder format called `name` (a generation model's serving format)."""
    fmt = format_of(name)
    if not isinstance(fmt, Pretrained):
        folders = [f.name for f in FORMATS.values() if isinstance(f, Pretrained)]
        raise ValueError(f"{fmt.name} is a tensor format; a language model is one of {folders}")
    return fmt
