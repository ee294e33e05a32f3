"""config.pbtxt for every Triton model of a spec entry, as tritonclient's
`model_config_pb2.ModelConfig` (never string templates), and the checks a config must pass
before a server sees it: tensors against the exported graph, ensemble wiring.

Tensor names, dtypes and dims are read from the exported ONNX graph and checked against the
spec; batching and instances come from settings.py, the one place they are translated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from handlers.dtypes import spec_dtype_of_numpy, triton_datatype
from handlers.kinds import ENSEMBLE_OUTPUTS
from handlers.plan import ARTIFACT_FILES, ServingPlan
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats
from scripts.runtimes.triton.config_rules import config_problems
from scripts.runtimes.triton.settings import scheduling
from scripts.spec import BuildError, ModelSpec

LABEL, SCORE = ENSEMBLE_OUTPUTS


def data_type(spec_dtype: str) -> int:
    """The spec's dtype -> config.pbtxt's TYPE_<datatype> (handlers/dtypes.py's table)."""
    return mc.DataType.Value(f"TYPE_{triton_datatype(spec_dtype)}")


STRING = mc.DataType.Value("TYPE_STRING")  # Triton's BYTES


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int  # mc.DataType
    shape: list[int]  # with the batch axis, -1 for dynamic


def onnx_signature(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs and outputs as the ONNX graph declares them (symbolic dims -> -1)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value) -> Tensor:
        t = value.type.tensor_type
        dtype = data_type(spec_dtype_of_numpy(tensor_dtype_to_np_dtype(t.elem_type)))
        return Tensor(
            value.name, dtype, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        )

    return (
        [tensor(v) for v in graph.input if v.name not in initializers],
        [tensor(v) for v in graph.output],
    )


def spec_tensors(tensors) -> list[Tensor]:
    return [Tensor(t.name, data_type(t.dtype), list(t.shape)) for t in tensors]


def checked_signature(spec: ModelSpec, layout: Layout) -> tuple[list[Tensor], list[Tensor]]:
    """The ONNX graph's tensors when there is one, after checking them against the spec
    (BuildError naming model, tensor and field); else the spec's."""
    wanted = spec_tensors(spec.inputs), spec_tensors(spec.outputs)
    path = layout.artifact_dir(spec) / ARTIFACT_FILES["onnx"]
    if "onnx" not in exported_formats(spec, layout):
        return wanted
    if not path.exists():
        raise BuildError(f"{spec.name}: {path} not found; run `make export` first")
    found = onnx_signature(path)
    problems = []
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
    problems = []
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


# --- config.pbtxt pieces ------------------------------------------------------------------------------


def dims(shape: list[int], max_batch_size: int) -> list[int]:
    """With batching Triton adds the batch axis itself; without (max_batch_size 0) the dims
    are the full shape, batch axis included."""
    return list(shape[1:]) if max_batch_size > 0 else list(shape)


def io_entries(tensors: list[Tensor], names: list[str], max_batch_size: int, kind):
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
) -> mc.ModelConfig:
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


def set_role(config: mc.ModelConfig, role: str) -> None:
    config.parameters["role"].string_value = role


def model_config(spec: ServingPlan, backend: str, signature) -> mc.ModelConfig:
    inputs, outputs = signature
    in_names, out_names = triton_names(spec, backend)
    config = base_config(spec, spec.name, backend=backend)
    if backend == "pytorch":
        config.default_model_filename = "model.pt"
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


def has_ensemble(spec: ModelSpec | ServingPlan) -> bool:
    """Kinds that decode encoded requests get bytes-in, label-out ensembles (classifiers)."""
    preprocess = spec.preprocess if isinstance(spec, ServingPlan) else spec.task.preprocess
    return preprocess.ensemble_input is not None and spec.task.kind == "classification"


def ensemble_configs(spec: ServingPlan, backend: str, signature) -> list[mc.ModelConfig]:
    """<name>_pre (bytes -> model input), <name>_post (model outputs -> label, score) and the
    ensemble wiring them around the tensor model."""
    inputs, outputs = signature
    mbs = spec.batching.max_batch_size
    raw = Tensor(spec.preprocess.ensemble_input, STRING, [-1, 1])
    answers = [Tensor(LABEL, STRING, [-1, 1]), Tensor(SCORE, data_type("float32"), [-1, 1])]
    produced = [t.name for t in spec.preprocess.produces(spec.inputs)]
    made = [t for t in inputs if t.name in produced]  # the model inputs pre-processing makes

    pre = base_config(spec, f"{spec.name}_pre", backend="python")
    pre.input.extend(io_entries([raw], [raw.name], mbs, mc.ModelInput))
    pre.output.extend(io_entries(made, [t.name for t in made], mbs, mc.ModelOutput))
    set_role(pre, "preprocess")

    post = base_config(spec, f"{spec.name}_post", backend="python")
    post.input.extend(io_entries(outputs, [t.name for t in outputs], mbs, mc.ModelInput))
    post.output.extend(io_entries(answers, [t.name for t in answers], mbs, mc.ModelOutput))
    set_role(post, "postprocess")

    in_names, out_names = triton_names(spec, backend)
    ensemble = base_config(spec, f"{spec.name}_ensemble", platform="ensemble")
    ensemble.input.extend(io_entries([raw], [raw.name], mbs, mc.ModelInput))
    ensemble.output.extend(io_entries(answers, [t.name for t in answers], mbs, mc.ModelOutput))
    steps = ensemble.ensemble_scheduling.step
    # input_map: step model's tensor -> ensemble tensor; output_map likewise.
    steps.add(
        model_name=pre.name,
        model_version=-1,
        input_map={raw.name: raw.name},
        output_map={t.name: t.name for t in made},
    )
    steps.add(
        model_name=spec.name,
        model_version=-1,
        input_map={n: t.name for n, t in zip(in_names, inputs) if t.name in produced},
        output_map={n: t.name for n, t in zip(out_names, outputs)},
    )
    steps.add(
        model_name=post.name,
        model_version=-1,
        input_map={t.name: t.name for t in outputs},
        output_map={t.name: t.name for t in answers},
    )
    return [pre, post, ensemble]


def check_ensemble(ensemble: mc.ModelConfig, configs: dict[str, mc.ModelConfig]) -> list[str]:
    """Every step's tensors exist in its model with the dtype and dims of the ensemble tensor
    mapped to it; every ensemble output is produced and every step input is available."""
    problems = []
    known = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    where = f"ensemble {ensemble.name}"
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        model_in = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        model_out = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        for model_tensor, ens_tensor in step.input_map.items():
            if model_tensor not in model_in:
                problems.append(
                    f"{where}: step {step.model_name}: no input {model_tensor!r} (has {sorted(model_in)})"
                )
            elif ens_tensor not in known:
                problems.append(
                    f"{where}: step {step.model_name}: {ens_tensor!r} is not produced before this step"
                )
            elif known[ens_tensor] != model_in[model_tensor]:
                problems.append(
                    f"{where}: step {step.model_name}: {model_tensor!r} expects "
                    f"{describe(model_in[model_tensor])}, {ens_tensor!r} is {describe(known[ens_tensor])}"
                )
        missing = sorted(set(model_in) - set(step.input_map))
        if missing:
            problems.append(f"{where}: step {step.model_name}: inputs {missing} are not mapped")
        for model_tensor, ens_tensor in step.output_map.items():
            if model_tensor not in model_out:
                has = sorted(model_out)
                problems.append(
                    f"{where}: step {step.model_name}: no output {model_tensor!r} (has {has})"
                )
            else:
                known[ens_tensor] = model_out[model_tensor]
    for t in ensemble.output:
        if known.get(t.name) != (t.data_type, list(t.dims)):
            problems.append(
                f"{where}: output {t.name!r} ({describe((t.data_type, list(t.dims)))}) is "
                f"{'never produced' if t.name not in known else describe(known[t.name])}"
            )
    return problems


def describe(tensor: tuple[int, list[int]]) -> str:
    return f"{mc.DataType.Name(tensor[0])} {tensor[1]}"


def write_config(
    config: mc.ModelConfig,
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


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())
