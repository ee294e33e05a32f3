"""Step `triton-repo`: a Triton model repository (triton_repo/) from the spec and the artifacts.

Per model `<name>/config.pbtxt` and `<name>/<version>/`. Configs are tritonclient's
`model_config_pb2.ModelConfig` written with protobuf text format; tensor names, dtypes and dims
are read from the exported ONNX graph and checked against the spec. Backends:
- `python` (runs here): handlers/triton_model.py as model.py, the `handlers/` package,
  model_config.json and the artifact (ONNX by default, or the spec's serving format);
- `onnxruntime` / `pytorch` (NVIDIA's containers only): `model.onnx` / `model.pt`, with each
  backend's tensor naming, checked offline against the artifact (check_native).
Models with image or text pre-processing also get `<name>_pre`, `<name>_post` (Python backend)
and `<name>_ensemble` (encoded bytes / strings in, label and score out); the bare tensor model
keeps the spec's name.
"""
from __future__ import annotations

import io
import json
import shutil
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import handlers
from handlers.runners import ARTIFACT_FILES
from scripts.errors import BuildError
from scripts.export import artifact_dir
from scripts.fingerprint import fingerprint, is_fresh, write_stamp
from scripts.runtime_config import CONFIG_FILE, runtime_config
from scripts.spec import ModelSpec

BACKENDS = ("python", "onnxruntime", "pytorch")
MODEL_PY = Path(handlers.__file__).with_name("triton_model.py")
TRITON_DTYPES = {"float32": mc.TYPE_FP32, "float16": mc.TYPE_FP16, "float64": mc.TYPE_FP64,
                 "int8": mc.TYPE_INT8, "int16": mc.TYPE_INT16, "int32": mc.TYPE_INT32,
                 "int64": mc.TYPE_INT64, "uint8": mc.TYPE_UINT8, "bool": mc.TYPE_BOOL}
ENSEMBLE_INPUTS = {"image": "IMAGE", "text": "TEXT"}  # encoded image bytes / UTF-8 text
LABEL, SCORE = "label", "score"
STAMP = "build.json"


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int          # mc.DataType
    shape: list[int]    # with the batch axis, -1 for dynamic


# --- the exported graph -----------------------------------------------------------------------------

def onnx_signature(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs and outputs as the ONNX graph declares them (symbolic dims -> -1)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value) -> Tensor:
        t = value.type.tensor_type
        dtype = TRITON_DTYPES[np.dtype(tensor_dtype_to_np_dtype(t.elem_type)).name]
        return Tensor(value.name, dtype, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim])

    return ([tensor(v) for v in graph.input if v.name not in initializers], [tensor(v) for v in graph.output])


def spec_tensors(tensors) -> list[Tensor]:
    return [Tensor(t.name, TRITON_DTYPES[t.dtype], list(t.shape)) for t in tensors]


def checked_signature(spec: ModelSpec, root: Path) -> tuple[list[Tensor], list[Tensor]]:
    """The ONNX graph's tensors when there is one, after checking them against the spec
    (BuildError naming model, tensor and field); else the spec's."""
    wanted = spec_tensors(spec.inputs), spec_tensors(spec.outputs)
    path = artifact_dir(spec, root) / ARTIFACT_FILES["onnx"]
    if "onnx" not in spec.export.formats:
        return wanted
    if not path.exists():
        raise BuildError(f"{spec.name}: {path} not found; run `make export` first")
    found = onnx_signature(path)
    problems = []
    for kind, spec_side, graph_side in zip(("inputs", "outputs"), wanted, found):
        if [t.name for t in spec_side] != [t.name for t in graph_side]:
            problems.append(f"{spec.name}: {kind}: the ONNX graph has {[t.name for t in graph_side]}, "
                            f"the spec {[t.name for t in spec_side]}; fix the spec's {kind} names")
            continue
        for s, g in zip(spec_side, graph_side):
            problems += mismatches(f"{spec.name}: {kind} {s.name!r}", s, g, "fix the spec or re-export")
    if problems:
        raise BuildError(problems)
    return found


def mismatches(where: str, expected: Tensor, found: Tensor, fix: str) -> list[str]:
    problems = []
    if expected.dtype != found.dtype:
        problems.append(f"{where}: dtype: expected {mc.DataType.Name(expected.dtype)}, "
                        f"found {mc.DataType.Name(found.dtype)}; {fix}")
    if len(expected.shape) != len(found.shape) or any(
            e != f and -1 not in (e, f) for e, f in zip(expected.shape, found.shape)):
        problems.append(f"{where}: dims: expected {expected.shape}, found {found.shape}; {fix}")
    return problems


# --- config.pbtxt pieces ------------------------------------------------------------------------------

def dims(shape: list[int], max_batch_size: int) -> list[int]:
    """With batching Triton adds the batch axis itself; without (max_batch_size 0) the dims
    are the full shape, batch axis included."""
    return list(shape[1:]) if max_batch_size > 0 else list(shape)


def io_entries(tensors: list[Tensor], names: list[str], max_batch_size: int, kind):
    return [kind(name=n, data_type=t.dtype, dims=dims(t.shape, max_batch_size)) for t, n in zip(tensors, names)]


def triton_names(spec: ModelSpec, backend: str) -> tuple[list[str], list[str]]:
    """libtorch loses tensor names: its backend binds inputs and outputs by `<name>__<index>`
    (the index is the position in forward()'s arguments / return value)."""
    inputs, outputs = [t.name for t in spec.inputs], [t.name for t in spec.outputs]
    if backend == "pytorch":
        return [f"{n}__{i}" for i, n in enumerate(inputs)], [f"{n}__{i}" for i, n in enumerate(outputs)]
    return inputs, outputs


def base_config(spec: ModelSpec, name: str, *, backend: str | None = None, platform: str | None = None,
                instances: bool = True) -> mc.ModelConfig:
    batching = spec.batching
    config = mc.ModelConfig(name=name, max_batch_size=batching.max_batch_size)
    if backend:
        config.backend = backend
    if platform:
        config.platform = platform
    config.version_policy.specific.versions.append(spec.version if platform != "ensemble" else 1)
    if batching.max_batch_size > 0 and platform != "ensemble":
        config.dynamic_batching.max_queue_delay_microseconds = int(round(batching.max_queue_delay_ms * 1000))
        config.dynamic_batching.preferred_batch_size.extend(
            b for b in batching.preferred_batch_sizes if b <= batching.max_batch_size)
    if instances and platform != "ensemble":
        # KIND_AUTO: GPU where the container has one; the Python models here run on CPU.
        kind = mc.ModelInstanceGroup.KIND_CPU if backend == "python" else mc.ModelInstanceGroup.KIND_AUTO
        config.instance_group.add(count=spec.serving.instances, kind=kind)
    return config


def set_role(config: mc.ModelConfig, role: str) -> None:
    config.parameters["role"].string_value = role


def model_config(spec: ModelSpec, backend: str, signature) -> mc.ModelConfig:
    inputs, outputs = signature
    in_names, out_names = triton_names(spec, backend)
    config = base_config(spec, spec.name, backend=backend)
    if backend == "pytorch":
        config.default_model_filename = "model.pt"
    config.input.extend(io_entries(inputs, in_names, spec.batching.max_batch_size, mc.ModelInput))
    config.output.extend(io_entries(outputs, out_names, spec.batching.max_batch_size, mc.ModelOutput))
    if backend == "python":
        set_role(config, "model")
    return config


def has_ensemble(spec: ModelSpec) -> bool:
    return spec.task.preprocess.kind in ENSEMBLE_INPUTS and spec.task.kind == "classification"


def ensemble_configs(spec: ModelSpec, backend: str, signature) -> list[mc.ModelConfig]:
    """<name>_pre (bytes -> model input), <name>_post (model outputs -> label, score) and the
    ensemble wiring them around the tensor model."""
    inputs, outputs = signature
    mbs = spec.batching.max_batch_size
    raw = Tensor(ENSEMBLE_INPUTS[spec.task.preprocess.kind], mc.TYPE_STRING, [-1, 1])
    answers = [Tensor(LABEL, mc.TYPE_STRING, [-1, 1]), Tensor(SCORE, mc.TYPE_FP32, [-1, 1])]
    first = inputs[0]

    pre = base_config(spec, f"{spec.name}_pre", backend="python")
    pre.input.extend(io_entries([raw], [raw.name], mbs, mc.ModelInput))
    pre.output.extend(io_entries([first], [first.name], mbs, mc.ModelOutput))
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
    steps.add(model_name=pre.name, model_version=-1, input_map={raw.name: raw.name},
              output_map={first.name: first.name})
    steps.add(model_name=spec.name, model_version=-1, input_map={in_names[0]: first.name},
              output_map={n: t.name for n, t in zip(out_names, outputs)})
    steps.add(model_name=post.name, model_version=-1, input_map={t.name: t.name for t in outputs},
              output_map={t.name: t.name for t in answers})
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
                problems.append(f"{where}: step {step.model_name}: no input {model_tensor!r} (has {sorted(model_in)})")
            elif ens_tensor not in known:
                problems.append(f"{where}: step {step.model_name}: {ens_tensor!r} is not produced before this step")
            elif known[ens_tensor] != model_in[model_tensor]:
                problems.append(f"{where}: step {step.model_name}: {model_tensor!r} expects "
                                f"{describe(model_in[model_tensor])}, {ens_tensor!r} is {describe(known[ens_tensor])}")
        missing = sorted(set(model_in) - set(step.input_map))
        if missing:
            problems.append(f"{where}: step {step.model_name}: inputs {missing} are not mapped")
        for model_tensor, ens_tensor in step.output_map.items():
            if model_tensor not in model_out:
                problems.append(f"{where}: step {step.model_name}: no output {model_tensor!r} (has {sorted(model_out)})")
            else:
                known[ens_tensor] = model_out[model_tensor]
    for t in ensemble.output:
        if known.get(t.name) != (t.data_type, list(t.dims)):
            problems.append(f"{where}: output {t.name!r} ({describe((t.data_type, list(t.dims)))}) is "
                            f"{'never produced' if t.name not in known else describe(known[t.name])}")
    return problems


def describe(tensor: tuple[int, list[int]]) -> str:
    return f"{mc.DataType.Name(tensor[0])} {tensor[1]}"


# --- warmup from the golden samples --------------------------------------------------------------

def serialize(array: np.ndarray) -> bytes:
    """Triton's raw warmup file: little-endian tensor bytes; BYTES as 4-byte length + bytes."""
    if array.dtype == np.object_:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def add_warmup(config: mc.ModelConfig, folder: Path, samples: dict[str, np.ndarray]) -> None:
    """One warmup request (batch 1) from one golden example per input, {triton name: row}."""
    warmup = config.model_warmup.add(name="golden", batch_size=1 if config.max_batch_size else 0)
    (folder / "warmup").mkdir(exist_ok=True)
    by_name = {t.name: t for t in config.input}
    for name, row in samples.items():
        file = f"{name}.bin"
        (folder / "warmup" / file).write_bytes(serialize(row))
        shape = list(row.shape) if config.max_batch_size == 0 else list(row.shape[1:])
        warmup.inputs[name].CopyFrom(mc.ModelWarmup.Input(
            data_type=by_name[name].data_type, dims=shape, input_data_file=file))
    if config.max_batch_size == 0:
        warmup.ClearField("batch_size")


def encoded_example(spec: ModelSpec, config: dict, row: np.ndarray) -> bytes:
    """A golden model-input row turned back into what a client sends: PNG bytes or text."""
    pre = config["task"]["preprocess"]
    if pre["kind"] == "text":
        tokens = pre["tokens"]
        return " ".join(tokens[i] for i in row.reshape(-1) if i > 1).encode() or b"hello"
    from PIL import Image

    pixels = np.clip((row * pre["std"] + pre["mean"]) * 255.0, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[0] if pre["grayscale"] else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- writing --------------------------------------------------------------------------------------

def write_config(config: mc.ModelConfig, folder: Path) -> Path:
    """config.pbtxt via text_format. proto3 drops fields at their default, so
    `max_batch_size: 0` would vanish; Triton reads absence as 0 too, but with
    --disable-auto-complete-config we state it so the file says what it means."""
    text = text_format.MessageToString(config)
    if config.max_batch_size == 0:
        text = "max_batch_size: 0  # no batching: dims include the batch axis\n" + text
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    path.write_text(text)
    return path


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def python_format(spec: ModelSpec, fmt: str | None) -> str:
    """What the Python backend runs: ONNX (onnxruntime) by default when exported."""
    fmt = fmt or ("onnx" if "onnx" in spec.export.formats else spec.serving.format)
    if fmt not in spec.export.formats:
        raise BuildError(f"{spec.name}: format {fmt!r} was not exported (export.formats: {spec.export.formats})")
    return fmt


def stage_python(spec: ModelSpec, root: Path, version_dir: Path, fmt: str | None) -> None:
    """model.py, the handlers/ package and model_config.json (plus the artifact when fmt)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODEL_PY, version_dir / "model.py")
    shutil.copytree(Path(handlers.__file__).parent, version_dir / "handlers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = runtime_config(spec, root)
    if fmt:
        config.update(format=fmt, artifact=ARTIFACT_FILES[fmt])
        shutil.copy2(artifact_dir(spec, root) / ARTIFACT_FILES[fmt], version_dir / ARTIFACT_FILES[fmt])
    (version_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")


NATIVE_FILES = {"onnxruntime": ("onnx", "model.onnx"), "pytorch": ("torchscript", "model.pt")}


def build_model(spec: ModelSpec, root: Path, out: Path, backend: str, fmt: str | None = None) -> list[str]:
    """Write the model's directories; returns the model names written (tensor model first)."""
    if backend not in BACKENDS:
        raise BuildError(f"{spec.name}: unknown Triton backend {backend!r}; use one of {BACKENDS}")
    signature = checked_signature(spec, root)
    golden = np.load(artifact_dir(spec, root) / "golden.npz")
    version = str(spec.version)
    config = model_config(spec, backend, signature)
    model_dir = out / spec.name
    if backend == "python":
        stage_python(spec, root, model_dir / version, python_format(spec, fmt))
    else:
        source_fmt, file = NATIVE_FILES[backend]
        if source_fmt not in spec.export.formats:
            raise BuildError(f"{spec.name}: the {backend} backend needs the {source_fmt} export; "
                             f"add it to export.formats")
        (model_dir / version).mkdir(parents=True)
        shutil.copy2(artifact_dir(spec, root) / ARTIFACT_FILES[source_fmt], model_dir / version / file)
    in_names, _ = triton_names(spec, backend)
    add_warmup(config, model_dir, {n: golden[f"input.{t.name}"][:1] for n, t in zip(in_names, spec.inputs)})
    configs = {spec.name: config}
    write_config(config, model_dir)
    if has_ensemble(spec):
        configs.update(write_ensemble(spec, root, out, backend, signature, golden))
    return list(configs)


def write_ensemble(spec, root, out, backend, signature, golden) -> dict[str, mc.ModelConfig]:
    pre, post, ensemble = ensemble_configs(spec, backend, signature)
    configs = {c.name: c for c in (pre, post, ensemble)}
    configs[spec.name] = model_config(spec, backend, signature)
    problems = check_ensemble(ensemble, configs)
    if problems:
        raise BuildError(problems)
    runtime = runtime_config(spec, root)
    example = encoded_example(spec, runtime, golden[f"input.{spec.inputs[0].name}"][0])
    samples = {pre.name: {pre.input[0].name: np.array([[example]], dtype=np.object_)},
               post.name: {t.name: golden[f"output.{t.name}"][:1] for t in spec.outputs}}
    for config in (pre, post):
        stage_python(spec, root, out / config.name / str(spec.version), None)
        add_warmup(config, out / config.name, samples[config.name])
        write_config(config, out / config.name)
    (out / ensemble.name / "1").mkdir(parents=True, exist_ok=True)  # Triton needs a version dir
    write_config(ensemble, out / ensemble.name)
    return {c.name: c for c in (pre, post, ensemble)}


def model_dirs(spec: ModelSpec, out: Path) -> list[Path]:
    names = [spec.name] + ([f"{spec.name}_{s}" for s in ("pre", "post", "ensemble")] if has_ensemble(spec) else [])
    return [out / n for n in names]


def repo_fingerprint(spec: ModelSpec, root: Path, backend: str, fmt: str | None) -> str:
    artifacts = artifact_dir(spec, root)
    files = [artifacts / "build.json", artifacts / "golden.npz", Path(__file__),
             *sorted(Path(handlers.__file__).parent.glob("*.py"))]
    return fingerprint({"spec": spec.model_dump(mode="json"), "backend": backend, "format": fmt}, files)


def build_repository(models: list[ModelSpec], root: Path, out: Path, backend: str | None = None,
                     force: bool = False, fmt: str | None = None) -> dict[str, bool]:
    """Write `out` for these models; {model: rebuilt?}. `backend` None means python for all.
    Native backends are checked offline against the artifact right after writing."""
    backend = backend or "python"
    out.mkdir(parents=True, exist_ok=True)
    rebuilt = {}
    for spec in models:
        dirs = model_dirs(spec, out)
        stamp = dirs[0] / STAMP
        expected = repo_fingerprint(spec, root, backend, fmt)
        if not force and is_fresh(stamp, expected, [d / "config.pbtxt" for d in dirs]):
            rebuilt[spec.name] = False
            continue
        for d in [*dirs, *(out / f"{spec.name}_{s}" for s in ("pre", "post", "ensemble"))]:
            shutil.rmtree(d, ignore_errors=True)
        build_model(spec, root, out, backend, fmt)
        if backend != "python":
            problems = check_native(dirs[0], spec)
            if problems:
                raise BuildError(problems)
        write_stamp(stamp, expected, backend=backend)
        rebuilt[spec.name] = True
    return rebuilt


# --- offline checks for backends that do not run here -----------------------------------------------

def check_native(model_dir: Path, spec: ModelSpec) -> list[str]:
    """config.pbtxt of an onnxruntime / pytorch model against its artifact: names, dtypes and
    dims for ONNX; for TorchScript the `<name>__<index>` naming, the forward() arity, and one
    golden batch run through the file with the outputs' dtypes and dims compared."""
    config = read_config(model_dir / "config.pbtxt")
    version_dir = model_dir / str(spec.version)
    mbs = config.max_batch_size
    declared = [Tensor(t.name, t.data_type, [-1] * (mbs > 0) + list(t.dims)) for t in config.input], \
               [Tensor(t.name, t.data_type, [-1] * (mbs > 0) + list(t.dims)) for t in config.output]
    if config.backend == "onnxruntime":
        return compare_signature(config.name, declared, onnx_signature(version_dir / "model.onnx"))
    if config.backend == "pytorch":
        return check_torchscript(config, declared, version_dir / "model.pt", spec)
    return [f"{config.name}: backend {config.backend!r} has no offline check"]


def compare_signature(name: str, declared, found) -> list[str]:
    problems = []
    for kind, cfg, art in zip(("input", "output"), declared, found):
        art_by_name = {t.name: t for t in art}
        if sorted(art_by_name) != sorted(t.name for t in cfg):
            problems.append(f"{name}: config {kind}s {[t.name for t in cfg]} != artifact {sorted(art_by_name)}")
            continue
        for t in cfg:
            problems += mismatches(f"{name}: {kind} {t.name!r}", t, art_by_name[t.name], "regenerate the repository")
    return problems


def check_torchscript(config: mc.ModelConfig, declared, path: Path, spec: ModelSpec) -> list[str]:
    import torch

    problems = [f"{config.name}: {kind} {t.name!r} does not follow libtorch's <name>__<index> naming"
                for kind, tensors in zip(("input", "output"), declared)
                for i, t in enumerate(tensors) if not t.name.endswith(f"__{i}")]
    with warnings.catch_warnings():  # TorchScript's deprecation notice: libtorch still reads it
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    arguments = [a.name for a in module.forward.schema.arguments][1:]  # drop self
    if len(arguments) != len(declared[0]):
        problems.append(f"{config.name}: forward() takes {arguments}, config declares {len(declared[0])} inputs")
    # Zeros lie in every input's range; batch 2 exercises the dynamic batch axis.
    inputs = [torch.zeros([2 if d == -1 else d for d in t.shape], dtype=torch_dtype(t.dtype)) for t in declared[0]]
    with torch.inference_mode():
        outputs = module(*inputs)
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    found = [Tensor(t.name, TRITON_DTYPES[str(o.dtype).removeprefix("torch.")], [-1] + list(o.shape[1:]))
             for t, o in zip(declared[1], outputs)]
    if len(outputs) != len(declared[1]):
        problems.append(f"{config.name}: the module returns {len(outputs)} outputs, config declares {len(declared[1])}")
    return problems + compare_signature(config.name, ([], declared[1]), ([], found))


def torch_dtype(data_type: int):
    import torch

    name = {v: k for k, v in TRITON_DTYPES.items()}[data_type]
    return getattr(torch, name)
