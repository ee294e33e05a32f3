"""Step `triton-repo`: a Triton model repository (triton_repo/) from the serving plans.

Per model `<name>/config.pbtxt` (configs.py) and `<name>/<version>/`. Backends:
- `python` (runs here): handlers/adapters/triton_model.py as model.py, the `handlers/` package, the
  serving plan and the artifact (ONNX by default, or the spec's serving format);
- `onnxruntime` / `pytorch` (NVIDIA's containers only): `model.onnx` / `model.pt`, with each
  backend's tensor naming, checked offline against the artifact (native.py).
Models whose pre-processing kind decodes encoded requests also get `<name>_pre`, for a
classifier `<name>_post` (Python backend), and `<name>_ensemble` (bytes / strings in; label and
score out for a classifier, the model's outputs otherwise); the bare tensor model keeps the
spec's name. Every model gets one warmup request from the golden samples.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scripts.runtimes.triton.model_config import ModelConfig, mc

import handlers
from handlers.encryption import is_encrypted
from handlers.formats import format_of
from handlers.plan import ServingPlan
from scripts.pipeline.fingerprint import is_fresh, write_stamp
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats, golden_examples
from scripts.pipeline.plan import copy_handlers, plan_fingerprint, serving_plan
from scripts.runtimes.triton.configs import NATIVE_FILES, model_config, triton_names, write_config
from scripts.runtimes.triton.ensemble import (
    check_ensemble,
    ensemble_configs,
    ensemble_parts,
    has_ensemble,
)
from scripts.runtimes.triton.generation import generation_config, stage_folder
from scripts.runtimes.triton.native import check_native, native_format
from scripts.runtimes.triton.settings import NAME
from scripts.runtimes.triton.signature import Signature, checked_signature
from scripts.spec import BuildError, ModelSpec

BACKENDS = ("python", "onnxruntime", "pytorch")
MODEL_PY = Path(handlers.__file__).parent / "adapters" / "triton_model.py"
STAMP = "build.json"
WRITERS = (
    "configs.py",
    "config_rules.py",
    "native.py",
    "settings.py",
    "generation.py",
)  # what writes a model


# --- warmup from the golden samples --------------------------------------------------------------


def serialize(array: npt.NDArray[Any]) -> bytes:
    """Triton's raw warmup file: little-endian tensor bytes; BYTES as 4-byte length + bytes."""
    if array.dtype == np.object_:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def add_warmup(config: ModelConfig, folder: Path, samples: dict[str, npt.NDArray[Any]]) -> None:
    """One warmup request (batch 1) from one golden example per input, {triton name: row}."""
    warmup = config.model_warmup.add(name="golden", batch_size=1 if config.max_batch_size else 0)
    (folder / "warmup").mkdir(exist_ok=True)
    by_name = {t.name: t for t in config.input}
    for name, row in samples.items():
        file = f"{name}.bin"
        (folder / "warmup" / file).write_bytes(serialize(row))
        shape = (
            list(row.shape) if config.max_batch_size == 0 else list(row.shape[1:]) or [1]
        )  # scalars: [1]
        warmup.inputs[name].CopyFrom(
            mc.ModelWarmup.Input(
                data_type=by_name[name].data_type, dims=shape, input_data_file=file
            )
        )
    if config.max_batch_size == 0:
        warmup.ClearField("batch_size")


def encoded_example(plan: ServingPlan, row: npt.NDArray[Any]) -> bytes:
    """A golden model-input row turned back into what a client sends (PNG bytes, text)."""
    return plan.preprocess.encode(row, plan.assets)


# --- writing --------------------------------------------------------------------------------------


def python_format(spec: ModelSpec, layout: Layout, fmt: str | None) -> str:
    """What the Python backend runs: ONNX (onnxruntime) by default when exported."""
    exported = exported_formats(spec, layout)
    # onnxruntime unless the spec serves another ONNX (int8), or has none
    fmt = fmt or (
        spec.serving.format
        if format_of(spec.serving.format).engine == "onnxruntime" or "onnx" not in exported
        else "onnx"
    )
    if fmt not in exported:
        raise BuildError(f"{spec.name}: format {fmt!r} was not exported (exported: {exported})")
    return fmt


def stage_python(
    plan: ServingPlan, layout: Layout, spec: ModelSpec, version_dir: Path, with_artifact: bool
) -> None:
    """model.py, the handlers/ package and the serving plan (plus the artifact it names)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODEL_PY, version_dir / "model.py")
    package = version_dir / "handlers"
    package.mkdir()
    copy_handlers(package)
    plan.save(version_dir)
    artifact = layout.artifact_dir(spec) / plan.artifact
    if with_artifact and artifact.is_dir():  # a generation model's Hugging Face folder
        stage_folder(artifact, version_dir)
    elif with_artifact:
        shutil.copy2(artifact, version_dir / plan.artifact)


def decoding_model(plan: ServingPlan, spec: ModelSpec, layout: Layout, out: Path) -> list[str]:
    """One decoupled Python model that decodes and streams (generation.py)."""
    stage_python(plan, layout, spec, out / spec.name / str(spec.version), with_artifact=True)
    write_config(generation_config(plan), out / spec.name)
    return [spec.name]


# serving engines (handlers/tasks.py) that Triton serves as one decoupled Python model, not as a
# tensor model (with an ensemble)
DECOUPLED_ENGINES = {"generate": decoding_model}


def build_model(
    spec: ModelSpec,
    layout: Layout,
    out: Path,
    backend: str,
    fmt: str | None = None,
    ensembles: bool = True,
) -> list[str]:
    """Write the model's directories; returns the model names written (tensor model first)."""
    if backend not in BACKENDS:
        raise BuildError(f"{spec.name}: unknown Triton backend {backend!r}; use one of {BACKENDS}")
    plan = serving_plan(spec, layout, python_format(spec, layout, fmt))
    if plan.task.serving.engine in DECOUPLED_ENGINES:
        return DECOUPLED_ENGINES[plan.task.serving.engine](plan, spec, layout, out)
    signature = checked_signature(spec, layout)
    golden = np.load(layout.artifact(spec).golden)
    version = str(spec.version)
    config = model_config(plan, backend, signature)
    model_dir = out / spec.name
    if backend == "python":
        stage_python(plan, layout, spec, model_dir / version, with_artifact=True)
    else:
        source_fmt, file = native_format(spec, backend), NATIVE_FILES[backend]
        if source_fmt not in exported_formats(spec, layout):
            raise BuildError(
                f"{spec.name}: the {backend} backend needs the {source_fmt} export; "
                f"add it to export.formats"
            )
        source = layout.artifact_dir(spec) / format_of(source_fmt).file
        if is_encrypted(source):
            raise BuildError(
                f"{spec.name}: its weights are encrypted (TORCHSHIP_ENCRYPTION_KEY_FILE) and "
                f"NVIDIA's {backend} backend cannot decrypt them; serve it on the Python backend "
                "(TRITON_BACKEND=python, the default), which decrypts in memory at load"
            )
        (model_dir / version).mkdir(parents=True)
        shutil.copy2(source, model_dir / version / file)
    in_names, out_names = triton_names(plan, backend)
    example = golden_examples(spec, layout, 1)[0]
    add_warmup(config, model_dir, {n: example[t.name] for n, t in zip(in_names, spec.inputs)})
    configs = {spec.name: config}
    write_config(config, model_dir, (in_names, out_names))
    if ensembles and has_ensemble(spec):
        configs.update(write_ensemble(plan, spec, layout, out, backend, signature, golden))
    return list(configs)


def write_ensemble(
    plan: ServingPlan,
    spec: ModelSpec,
    layout: Layout,
    out: Path,
    backend: str,
    signature: Signature,
    golden: Mapping[str, npt.NDArray[Any]],  # the golden .npz
) -> dict[str, ModelConfig]:
    configs = {c.name: c for c in ensemble_configs(plan, backend, signature)}
    ensemble = configs.pop(f"{spec.name}_ensemble")
    problems = check_ensemble(
        ensemble, {**configs, spec.name: model_config(plan, backend, signature)}
    )
    if problems:
        raise BuildError(problems)
    first = golden_examples(spec, layout, 1)[0][spec.inputs[0].name]
    example = encoded_example(plan, first[0] if spec.batching.max_batch_size else first)
    pre = configs[f"{spec.name}_pre"]
    samples = {
        pre.name: {pre.input[0].name: np.array([[example]], dtype=np.object_)},
        f"{spec.name}_post": {t.name: golden[f"output.{t.name}"][:1] for t in spec.outputs},
    }
    for config in configs.values():
        stage_python(plan, layout, spec, out / config.name / str(spec.version), with_artifact=False)
        add_warmup(config, out / config.name, samples[config.name])
        write_config(config, out / config.name)
    (out / ensemble.name / "1").mkdir(parents=True, exist_ok=True)  # Triton needs a version dir
    write_config(ensemble, out / ensemble.name)
    return {**configs, ensemble.name: ensemble}


def model_names(spec: ModelSpec) -> list[str]:
    """The Triton models of one spec entry, tensor model first."""
    return [spec.name] + [f"{spec.name}_{part}" for part in ensemble_parts(spec)]


def model_dirs(spec: ModelSpec, out: Path) -> list[Path]:
    return [out / n for n in model_names(spec)]


def repo_fingerprint(spec: ModelSpec, layout: Layout, backend: str, fmt: str | None) -> str:
    plan = serving_plan(spec, layout, python_format(spec, layout, fmt))
    code = [
        Path(__file__),
        *(Path(__file__).with_name(m) for m in WRITERS),
        layout.artifact(spec).golden,
    ]
    return plan_fingerprint(spec, layout, plan, backend, code=code)


def build_repository(
    models: list[ModelSpec],
    layout: Layout,
    out: Path,
    backend: str | None = None,
    force: bool = False,
    fmt: str | None = None,
    ensembles: bool = True,
) -> dict[str, bool]:
    """Write `out` for these models; {model: rebuilt?}. `backend` None means python for all;
    `ensembles` False leaves out the Python pre/post steps and ensembles (tensor models only).
    Native backends are checked offline against the artifact right after writing."""
    backend = backend or "python"
    out.mkdir(parents=True, exist_ok=True)
    rebuilt: dict[str, bool] = {}
    for spec in (m.for_runtime(NAME) for m in models):
        dirs = model_dirs(spec, out)
        stamp = dirs[0] / STAMP
        expected = repo_fingerprint(spec, layout, backend, fmt)
        if not force and is_fresh(stamp, expected, [d / "config.pbtxt" for d in dirs]):
            rebuilt[spec.name] = False
            continue
        clear_first_version(dirs[0], spec.version)
        for d in (out / f"{spec.name}_{s}" for s in ("pre", "post", "ensemble")):
            shutil.rmtree(d, ignore_errors=True)
        build_model(spec, layout, out, backend, fmt, ensembles)
        if backend != "python" and not spec.task.serving.pretrained:  # those: Python always
            problems = check_native(dirs[0], spec)
            if problems:
                raise BuildError(problems)
        write_stamp(stamp, expected, backend=backend)
        rebuilt[spec.name] = True
    return rebuilt


def clear_first_version(model_dir: Path, version: int) -> None:
    """What a rebuild of the model's first version replaces; other versions' folders stay."""
    shutil.rmtree(model_dir / str(version), ignore_errors=True)
    shutil.rmtree(model_dir / "warmup", ignore_errors=True)
    for name in ("config.pbtxt", STAMP):
        (model_dir / name).unlink(missing_ok=True)


def build_version(
    spec: ModelSpec, version: int, layout: Layout, out: Path, force: bool = False
) -> bool:
    """Add <name>/<version>/ beside the first version's (Python backend; built first if needed)
    for `make rollout`: the config.pbtxt stays the first version's, and a rollout loads the
    version by overriding its version_policy. Returns False when it was up to date."""
    build_repository([spec], layout, out)
    versioned = spec.at_version(version).for_runtime(NAME)
    if version == spec.version:
        return False
    folder, stamp = out / spec.name / str(version), out / spec.name / f"build.v{version}.json"
    expected = repo_fingerprint(versioned, layout, "python", None)
    if not force and is_fresh(stamp, expected, [folder / "model.py"]):
        return False
    plan = serving_plan(versioned, layout, python_format(versioned, layout, None))
    first = serving_plan(spec.for_runtime(NAME), layout)
    if has_ensemble(spec) and plan.assets != first.assets:
        raise BuildError(
            f"{spec.name} version {version}: its pre-processing assets differ from version "
            f"{spec.version}'s, and Triton's {spec.name}_pre/_post serve every version with the "
            "first version's: roll it out on TorchServe alone (RUNTIME=torchserve: each archive "
            "carries its own assets), or serve it as a model of its own"
        )
    shutil.rmtree(folder, ignore_errors=True)
    stage_python(plan, layout, versioned, folder, with_artifact=True)
    write_stamp(stamp, expected, backend="python")
    return True
