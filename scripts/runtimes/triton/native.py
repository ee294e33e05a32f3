"""Offline checks for the backends that run only in NVIDIA's containers (onnxruntime,
pytorch/libtorch): each generated config.pbtxt against its artifact, since no such server
runs here."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from handlers.runners import register_op_libraries
from scripts.runtimes.triton.model_config import DataType, ModelConfig, mc

from handlers.preprocessing.dtypes import spec_dtype
from handlers.formats import FORMATS
from scripts.runtimes.triton.configs import NATIVE_FILES, read_config
from scripts.runtimes.triton.signature import (
    Signature,
    Tensor,
    data_type,
    mismatches,
    onnx_signature,
)
from scripts.spec import ModelSpec

if TYPE_CHECKING:
    import torch


def native_format(spec: ModelSpec, backend: str) -> str:
    """The export a native backend serves: the spec's serving format when that backend serves
    it, else the first format it serves (onnxruntime: onnx; pytorch: torchscript)."""
    served = [f.name for f in FORMATS.values() if f.triton_backend == backend]
    return spec.serving.format if spec.serving.format in served else served[0]


def check_native(model_dir: Path, spec: ModelSpec) -> list[str]:
    """config.pbtxt of an onnxruntime / pytorch model against its artifact: names, dtypes and
    dims for ONNX; for TorchScript the `<name>__<index>` naming, the forward() arity, and one
    golden batch run through the file with the outputs' dtypes and dims compared."""
    config = read_config(model_dir / "config.pbtxt")
    version_dir = model_dir / str(spec.version)
    mbs = config.max_batch_size
    declared = (
        [model_side(t, mbs) for t in config.input],
        [model_side(t, mbs) for t in config.output],
    )
    if config.backend == "onnxruntime":
        return compare_signature(
            config.name, declared, onnx_signature(version_dir / NATIVE_FILES["onnxruntime"])
        )
    if config.backend == "pytorch":
        return check_torchscript(config, declared, version_dir / NATIVE_FILES["pytorch"], spec)
    return [f"{config.name}: backend {config.backend!r} has no offline check"]


def model_side(tensor: mc.ModelInput | mc.ModelOutput, max_batch_size: int) -> Tensor:
    """A config tensor as the model sees it: a reshape (a per-sample scalar's dims [1] ->
    shape []) is what reaches the artifact."""
    shape = tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims
    return Tensor(tensor.name, tensor.data_type, [-1] * (max_batch_size > 0) + list(shape))


def compare_signature(name: str, declared: Signature, found: Signature) -> list[str]:
    problems: list[str] = []
    for kind, cfg, art in zip(("input", "output"), declared, found):
        art_by_name = {t.name: t for t in art}
        if sorted(art_by_name) != sorted(t.name for t in cfg):
            problems.append(
                f"{name}: config {kind}s {[t.name for t in cfg]} != artifact {sorted(art_by_name)}"
            )
            continue
        for t in cfg:
            problems += mismatches(
                f"{name}: {kind} {t.name!r}", t, art_by_name[t.name], "regenerate the repository"
            )
    return problems


def check_torchscript(
    config: ModelConfig, declared: Signature, path: Path, spec: ModelSpec
) -> list[str]:
    import torch

    problems = [
        f"{config.name}: {kind} {t.name!r} does not follow libtorch's <name>__<index> naming"
        for kind, tensors in zip(("input", "output"), declared)
        for i, t in enumerate(tensors)
        if not t.name.endswith(f"__{i}")
    ]

    register_op_libraries(str(path))  # torchvision::nms and the like, as a server has them
    with warnings.catch_warnings():  # TorchScript's deprecation notice: libtorch still reads it
        warnings.simplefilter("ignore")
        # torch.jit.load is unannotated: the module is Any, what is read of it typed where used
        module = cast(Any, torch.jit.load(str(path), map_location="cpu"))  # pyright: ignore[reportUnknownMemberType]
    arguments: list[str] = [a.name for a in module.forward.schema.arguments][1:]  # drop self
    if len(arguments) != len(declared[0]):
        problems.append(
            f"{config.name}: forward() takes {arguments}, config declares {len(declared[0])} inputs"
        )
    # Zeros lie in every input's range; batch 2 exercises the dynamic batch axis.
    inputs = [
        torch.zeros([2 if d == -1 else d for d in t.shape], dtype=torch_dtype(t.dtype))
        for t in declared[0]
    ]
    with torch.inference_mode():
        outputs: object = module(*inputs)
    returned = type(outputs).__name__
    if isinstance(outputs, dict) or not isinstance(outputs, (torch.Tensor, tuple, list)):
        return problems + [
            f"{config.name}: the module returns {returned}; libtorch's backend needs "
            "a tensor or a tuple of tensors (serve this model on the onnxruntime backend)"
        ]
    tensors = (
        [outputs]
        if isinstance(outputs, torch.Tensor)
        else list(cast("Sequence[torch.Tensor]", outputs))
    )
    found = [
        Tensor(t.name, data_type(str(o.dtype).removeprefix("torch.")), [-1] + list(o.shape[1:]))
        for t, o in zip(declared[1], tensors)
    ]
    if len(tensors) != len(declared[1]):
        problems.append(
            f"{config.name}: the module returns {len(tensors)} outputs, "
            f"config declares {len(declared[1])}"
        )
    return problems + compare_signature(config.name, ([], declared[1]), ([], found))


def torch_dtype(data_type: DataType) -> torch.dtype:
    import torch

    return getattr(torch, spec_dtype(mc.DataType.Name(data_type).removeprefix("TYPE_")))
