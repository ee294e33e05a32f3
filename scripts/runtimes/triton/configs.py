"""config.pbtxt for every Triton model of a spec entry, as tritonclient's
`model_config_pb2.ModelConfig` (never string templates), checked against Triton's rules before a
server sees it.

Tensor names, dtypes and dims come from the exported graph, checked against the spec
(signature.py); batching and instances come from settings.py, the one place they are
translated; a classifier's ensemble is built from these pieces in ensemble.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from scripts.runtimes.triton.model_config import ModelConfig, mc

from handlers.plan import ServingPlan
from scripts.runtimes.triton.config_rules import config_problems
from scripts.runtimes.triton.settings import scheduling
from scripts.runtimes.triton.signature import Signature, Tensor
from scripts.spec import BuildError

# The file each native backend loads from a model's version folder (its default name).
NATIVE_FILES = {"onnxruntime": "model.onnx", "pytorch": "model.pt"}


def dims(shape: list[int], max_batch_size: int) -> list[int]:
    """With batching Triton adds the batch axis itself; without (max_batch_size 0) the dims
    are the full shape, batch axis included."""
    return list(shape[1:]) if max_batch_size > 0 else list(shape)


# config.pbtxt's input and output entries share the fields written here
IOEntry = TypeVar("IOEntry", mc.ModelInput, mc.ModelOutput)


def io_entries(
    tensors: list[Tensor], names: list[str], max_batch_size: int, kind: type[IOEntry]
) -> list[IOEntry]:
    entries = [
        kind(name=n, data_type=t.dtype, dims=dims(t.shape, max_batch_size))
        for t, n in zip(tensors, names)
    ]
    for entry in entries:
        if not entry.dims:  # a per-sample scalar ([-1]): Triton needs dims, the model sees [batch]
            entry.dims.append(1)
            entry.reshape.SetInParent()  # reshape: { shape: [] }
    return entries


def triton_names(spec: ServingPlan, backend: str) -> tuple[list[str], list[str]]:
    """libtorch loses tensor names: its backend binds inputs and outputs by `<name>__<index>`
    (the index is the position in forward()'s arguments / return value)."""
    inputs, outputs = [t.name for t in spec.inputs], [t.name for t in spec.outputs]
    if backend == "pytorch":
        return [f"{n}__{i}" for i, n in enumerate(inputs)], [
            f"{n}__{i}" for i, n in enumerate(outputs)
        ]
    return inputs, outputs


def base_config(
    plan: ServingPlan,
    name: str,
    *,
    backend: str | None = None,
    platform: str | None = None,
    instances: bool = True,
) -> ModelConfig:
    settings = scheduling(plan).settings
    config = mc.ModelConfig(name=name, max_batch_size=settings["max_batch_size"])
    if backend:
        config.backend = backend
    if platform:
        config.platform = platform
    config.version_policy.specific.versions.append(plan.version if platform != "ensemble" else 1)
    if "max_queue_delay_microseconds" in settings and platform != "ensemble":
        config.dynamic_batching.max_queue_delay_microseconds = settings[
            "max_queue_delay_microseconds"
        ]
        config.dynamic_batching.preferred_batch_size.extend(settings["preferred_batch_size"])
    if instances and platform != "ensemble":
        # KIND_AUTO: GPU where the container has one; the Python models here run on CPU.
        kind = (
            mc.ModelInstanceGroup.KIND_CPU
            if backend == "python"
            else mc.ModelInstanceGroup.KIND_AUTO
        )
        config.instance_group.add(count=settings["instances"], kind=kind)
    return config


def set_role(config: ModelConfig, role: str) -> None:
    config.parameters["role"].string_value = role


def model_config(spec: ServingPlan, backend: str, signature: Signature) -> ModelConfig:
    inputs, outputs = signature
    in_names, out_names = triton_names(spec, backend)
    config = base_config(spec, spec.name, backend=backend)
    if backend == "pytorch":
        config.default_model_filename = NATIVE_FILES["pytorch"]
    config.input.extend(io_entries(inputs, in_names, spec.batching.max_batch_size, mc.ModelInput))
    config.output.extend(
        io_entries(outputs, out_names, spec.batching.max_batch_size, mc.ModelOutput)
    )
    if backend == "python":
        set_role(config, "model")
        if spec.batching.pad is not None:  # our model.py pads a batch of different lengths
            for entry, tensor in zip(config.input, inputs):
                entry.allow_ragged_batch = -1 in tensor.shape[1:]
    return config


def write_config(
    config: ModelConfig,
    folder: Path,
    artifact_names: tuple[list[str] | None, list[str] | None] = (None, None),
) -> Path:
    """config.pbtxt via text_format, after checking it against Triton's rules (and the
    artifact's tensor names, when given). proto3 drops fields at their default, so
    `max_batch_size: 0` would vanish; Triton reads absence as 0 too, but with
    --disable-auto-complete-config we state it so the file says what it means."""
    problems = config_problems(config, *artifact_names)
    if problems:
        raise BuildError(problems)
    text = text_format.MessageToString(config)
    if config.max_batch_size == 0:
        text = "max_batch_size: 0  # no batching: dims include the batch axis\n" + text
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    path.write_text(text)
    return path


def read_config(path: Path) -> ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())
