"""Tensor signatures of a Triton model: as the spec declares them, as the exported ONNX graph
declares them (symbolic dims -> -1), and the checks of one against the other, with problems
naming the model, the tensor, the field and the fix. Dtypes are config.pbtxt's TYPE_<datatype>
(handlers/preprocessing/dtypes.py's table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from scripts.runtimes.triton.model_config import DataType, mc

from handlers.preprocessing.dtypes import spec_dtype_of_numpy, triton_datatype
from handlers.encryption import decrypted
from handlers.formats import FORMATS
from handlers.preprocessing.tensors import TensorSpec
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats
from scripts.spec import BuildError, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    from onnx import ValueInfoProto


def data_type(spec_dtype: str) -> DataType:
    """The spec's dtype -> config.pbtxt's TYPE_<datatype> (handlers/preprocessing/dtypes.py's
    table)."""
    return mc.DataType.Value(f"TYPE_{triton_datatype(spec_dtype)}")


STRING = mc.DataType.Value("TYPE_STRING")  # Triton's BYTES


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: DataType
    shape: list[int]  # with the batch axis, -1 for dynamic


Signature: TypeAlias = tuple[list[Tensor], list[Tensor]]  # (inputs, outputs)


def onnx_signature(path: Path, owner: tuple[str, int] | None = None) -> Signature:
    """Inputs and outputs as the ONNX graph declares them (symbolic dims -> -1); an encrypted
    graph is decrypted in memory (`owner`: its model name and version)."""
    import onnx

    # onnx annotates the numpy dtype it returns as a bare np.dtype
    from onnx.helper import tensor_dtype_to_np_dtype  # pyright: ignore[reportUnknownVariableType]

    plain = decrypted(path, *owner) if owner is not None else None
    graph = onnx.load_model_from_string(plain if plain is not None else path.read_bytes()).graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value: ValueInfoProto) -> Tensor:
        t = value.type.tensor_type
        numpy_dtype = cast("np.dtype[Any]", tensor_dtype_to_np_dtype(t.elem_type))
        dtype = data_type(spec_dtype_of_numpy(numpy_dtype))
        return Tensor(
            value.name, dtype, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        )

    return (
        [tensor(v) for v in graph.input if v.name not in initializers],
        [tensor(v) for v in graph.output],
    )


def spec_tensors(tensors: list[TensorSpec]) -> list[Tensor]:
    return [Tensor(t.name, data_type(t.dtype), list(t.shape)) for t in tensors]


def checked_signature(spec: ModelSpec, layout: Layout) -> Signature:
    """The ONNX graph's tensors when there is one, after checking them against the spec
    (BuildError naming model, tensor and field); else the spec's."""
    wanted = spec_tensors(spec.inputs), spec_tensors(spec.outputs)
    path = layout.artifact_dir(spec) / FORMATS["onnx"].file
    if "onnx" not in exported_formats(spec, layout):
        return wanted
    if not path.exists():
        raise BuildError(f"{spec.name}: {path} not found; run `make export` first")
    found = onnx_signature(path, (spec.name, spec.version))
    problems: list[str] = []
    for kind, spec_side, graph_side in zip(("inputs", "outputs"), wanted, found):
        if [t.name for t in spec_side] != [t.name for t in graph_side]:
            problems.append(
                f"{spec.name}: {kind}: the ONNX graph has {[t.name for t in graph_side]}, "
                f"the spec {[t.name for t in spec_side]}; fix the spec's {kind} names"
            )
            continue
        for s, g in zip(spec_side, graph_side):
            problems += mismatches(
                f"{spec.name}: {kind} {s.name!r}", s, g, "fix the spec or re-export"
            )
    if problems:
        raise BuildError(problems)
    return found


def mismatches(where: str, expected: Tensor, found: Tensor, fix: str) -> list[str]:
    problems: list[str] = []
    if expected.dtype != found.dtype:
        problems.append(
            f"{where}: dtype: expected {mc.DataType.Name(expected.dtype)}, "
            f"found {mc.DataType.Name(found.dtype)}; {fix}"
        )
    if len(expected.shape) != len(found.shape) or any(
        e != f and -1 not in (e, f) for e, f in zip(expected.shape, found.shape)
    ):
        problems.append(f"{where}: dims: expected {expected.shape}, found {found.shape}; {fix}")
    return problems
