"""Step `export`: every format the spec asks for, into artifacts/<name>/<version>/, verified.

Each format (scripts/pipeline/exporters.py) is traced at batch size 2 with a dynamic batch axis
(a model without a batch axis at its spec's shape), then checked against eager PyTorch at other
batch sizes (scripts/pipeline/verify.py). Also writes the golden samples
(golden.npz: inputs and eager outputs) that every served endpoint is later checked against.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

import handlers.formats
import handlers.runners
from handlers.encryption import WeightsError, encrypt_file, is_encrypted, master_key
from handlers.formats import format_of
from handlers.runners import output_list, torch_runner
from scripts.pipeline.exporters import export_format
from scripts.pipeline.fingerprint import fingerprint, is_fresh, source_file, write_stamp
from scripts.pipeline.loading import load_reference
from scripts.pipeline.layout import ArtifactDir, Layout
from scripts.pipeline.paths import exported_formats
from scripts.pipeline.quantize import build_int8
from scripts.pipeline.sealed import refuse_changed, seal
from scripts.pipeline.verify import random_inputs, verify_formats
from scripts.spec import BuildError, ModelSpec

TRACE_BATCH = 2  # never one of the verification batch sizes (1, 3, max)
TRACE_AXIS_SIZE = (
    3  # other dynamic axes: never verify.DYNAMIC_AXIS_SIZE (torch.export specialises 0 and 1)
)
GOLDEN_BATCH = 4  # random golden inputs when training kept no held-out samples


@dataclass
class ExportResult:
    name: str
    skipped: bool
    report: dict


def served_formats(spec: ModelSpec) -> dict[str, str]:
    """{spec field: format} for every format a runtime serves: serving.format and per_runtime's."""
    formats = {"serving.format": spec.serving.format}
    formats.update(
        {f"per_runtime.{r}.format": s.format for r, s in spec.per_runtime.items() if s.format}
    )
    return formats


def export_fingerprint(spec: ModelSpec, layout: Layout) -> str:
    code = [
        Path(__file__),
        Path(__file__).with_name("exporters.py"),
        Path(__file__).with_name("verify.py"),
        Path(__file__).with_name("quantize.py"),
        Path(handlers.runners.__file__),
        *sorted(Path(handlers.formats.__file__).parent.glob("*.py")),  # each format's exporter
    ]
    if spec.source.module:
        code.append(source_file(spec.source.module))
    # Serving settings (format, workers, queue delay), the other versions and the rollout gate
    # do not change what is exported.
    settings = spec.model_dump(
        mode="json",
        exclude={"serving", "description", "batching", "per_runtime", "versions", "rollout"},
    )
    settings["max_batch_size"] = spec.batching.max_batch_size  # sets a verification batch size
    # the exporters' versions change the graphs they write
    settings["exporters"] = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort_version(),
    }
    return fingerprint(settings, spec.model_files(layout.root) + code)


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def example_args(spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    inputs = random_inputs(spec, TRACE_BATCH, np.random.default_rng(0), TRACE_AXIS_SIZE)
    return tuple(torch.from_numpy(inputs[t.name]) for t in spec.inputs)


def check_signature(spec: ModelSpec, reference: torch.nn.Module, args: tuple) -> None:
    """The model's real outputs must match the spec's outputs in count, dtype and shape."""
    with torch.inference_mode():
        returned = reference(*args)
    if isinstance(returned, dict) and list(returned) != spec.output_names:
        # the exporters flatten a dict in its own order: the spec must list the outputs so
        raise BuildError(
            f"{spec.name}: forward() returns a dict with keys {list(returned)}; list the spec's "
            f"outputs with exactly those names in that order (now {spec.output_names})"
        )
    outputs = output_list(returned, spec.output_names)
    if len(outputs) != len(spec.outputs):
        raise BuildError(
            f"{spec.name}: the model returns {len(outputs)} output(s) but the spec lists "
            f"{len(spec.outputs)}; make outputs match the forward() return value"
        )
    problems = []
    for i, (tensor, out) in enumerate(zip(spec.outputs, outputs)):
        shape_ok = len(out.shape) == len(tensor.shape) and all(
            d == -1 or d == s for d, s in zip(tensor.shape, out.shape)
        )
        dtype = str(out.dtype).removeprefix("torch.")
        if not shape_ok or dtype != tensor.dtype:
            problems.append(
                f"{spec.name}: outputs[{i}] ({tensor.name}): the model returns {dtype} "
                f"{list(out.shape)} for batch {TRACE_BATCH}, the spec says {tensor.dtype} "
                f"{tensor.shape}; fix the spec's outputs"
            )
    if problems:
        raise BuildError(problems)


def golden_inputs(spec: ModelSpec, layout: Layout) -> dict[str, np.ndarray]:
    """Held-out examples saved by training when there are any, else random inputs."""
    if spec.source.checkpoint is not None:
        samples = layout.source(spec.source.checkpoint).parent / "samples.npz"
        if samples.exists():
            with np.load(samples) as saved:
                return {t.name: saved[t.name].astype(t.numpy) for t in spec.inputs}
    return random_inputs(spec, GOLDEN_BATCH, np.random.default_rng(0))


def write_golden(spec: ModelSpec, reference, out: Path, layout: Layout) -> None:
    inputs = golden_inputs(spec, layout)
    outputs = torch_runner(reference, spec.tensor_names, spec.output_names)(inputs)
    np.savez(
        ArtifactDir(out).golden,
        **{f"input.{k}": v for k, v in inputs.items()},
        **{f"output.{t.name}": v for t, v in zip(spec.outputs, outputs)},
    )


def require_sources(spec: ModelSpec, layout: Layout) -> None:
    missing = [p for p in spec.model_files(layout.root)[:1] if not p.exists()]
    if missing:
        raise BuildError(
            f"{spec.name}: {missing[0]} not found; run `make train` or fix source in the spec"
        )


def export_model(
    spec: ModelSpec, layout: Layout, force: bool = False, on_format=lambda fmt: None
) -> ExportResult:
    artifact = layout.artifact(spec)
    out, stamp, report_path = artifact.root, artifact.stamp, artifact.report
    require_sources(spec, layout)
    refuse_changed(spec, layout, force)
    expected = export_fingerprint(spec, layout)
    formats = exported_formats(spec, layout)
    files = [out / format_of(f).file for f in formats] + [artifact.golden, report_path]
    master = configured_key(spec)  # a bad key fails here, before any plaintext is written
    if not force and is_fresh(stamp, expected, files):
        if not artifact.record.exists():  # built before versions were sealed
            seal(spec, layout)
        encrypt_exports(spec, weight_files(out, formats), master)  # a key set since the export
        return ExportResult(spec.name, True, json.loads(report_path.read_text()))

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        report, exported = export_verified(spec, layout, out, report_path, on_format)
        encrypt_exports(spec, weight_files(out, exported), master)
    except BaseException:
        if master is not None:  # a failed export, verification or gate leaves no plaintext
            shutil.rmtree(out, ignore_errors=True)
        raise
    write_stamp(
        stamp, expected, formats={f: format_of(f).file for f in exported}, skipped=report["skipped"]
    )
    seal(spec, layout)
    return ExportResult(spec.name, False, report)


def export_verified(
    spec: ModelSpec, layout: Layout, out: Path, report_path: Path, on_format
) -> tuple[dict, list[str]]:
    """Every wanted format exported into `out` and verified against eager: the report and the
    formats that passed."""
    reference = load_reference(spec, layout)
    args = example_args(spec)
    check_signature(spec, reference, args)
    skipped = {} if spec.export.auto else None
    runners = {}
    for fmt in spec.export.wanted:
        if format_of(fmt).quantized_from:  # from the verified source export, behind a gate (below)
            continue
        on_format(fmt)
        try:
            runners[fmt] = export_format(spec, fmt, reference, args, out / format_of(fmt).file)
        except BuildError as exc:
            if skipped is None:
                raise
            skipped[fmt] = exc.problems[0]
    write_golden(spec, reference, out, layout)
    eager = torch_runner(reference, spec.tensor_names, spec.output_names)
    report = verify_formats(spec, eager, runners, report_path, skipped)
    exported = [f for f in runners if f not in report["skipped"]]
    if "onnx_int8" in spec.export.wanted and "onnx" in exported:
        on_format("onnx_int8")
        report["int8"] = build_int8(spec, layout, out, runners["onnx"])
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        exported.append("onnx_int8")
    for field, fmt in served_formats(spec).items():
        if fmt not in exported:
            raise BuildError(
                f"{spec.name}: {field} {fmt!r} could not be exported "
                f"({report['skipped'].get(fmt, 'its source format failed')}); "
                f"serve one of {exported}"
            )
    for fmt in report["skipped"]:
        (out / format_of(fmt).file).unlink(missing_ok=True)
    return report, exported


def weight_files(out: Path, formats: list[str]) -> list[Path]:
    """The files of these formats that are encrypted at rest when a key is configured."""
    return [out / format_of(f).file for f in formats if format_of(f).encryptable]


def configured_key(spec: ModelSpec) -> bytes | None:
    try:
        return master_key()
    except WeightsError as exc:
        raise BuildError(f"{spec.name}: {exc}") from None


def encrypt_exports(spec: ModelSpec, files: list[Path], master: bytes | None) -> None:
    """With TORCHSHIP_ENCRYPTION_KEY_FILE set, the verified weight files are replaced by their
    ciphertext (handlers/encryption.py); everything after the export decrypts them in memory.
    If that fails, the files still in plaintext are removed (the next build exports again)."""
    if master is None:
        return
    for path in files:
        try:
            encrypt_file(path, master, spec.name, spec.version)
        except Exception as exc:
            for left in files:
                if not is_encrypted(left):
                    left.unlink(missing_ok=True)
            raise BuildError(
                f"{spec.name}: encrypting {path.name} failed ({type(exc).__name__}: {exc}); "
                "its plaintext weights were removed: fix the cause and build again"
            ) from exc
