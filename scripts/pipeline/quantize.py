"""Format `onnx_int8`: the fp32 ONNX export quantised with onnxruntime.quantization, kept only
if it passes an accuracy gate against fp32.

- dynamic quantisation (int8 weights, activations quantised at run time) where it fits:
  Linear, LSTM/GRU, embeddings; static QDQ with calibration data where there are convolutions;
- per-channel weights; `reduce_range` (7-bit weights) unless the CPU has VNNI, whose int8 dot
  products do not saturate;
- the gate: held-out accuracy from the training data for classifiers that have it, else top-1
  agreement with fp32 (classifiers) or the relative error of the outputs (others), on the
  golden inputs and fresh random ones. Beyond the spec's limit the build fails, naming the
  metric, both values and, for QDQ models, the weights that lose most.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from handlers.formats import FORMATS
from handlers.preprocessing.processing import class_scores
from handlers.runners import Runner, load_runner
from scripts.pipeline.loading import import_target
from scripts.pipeline.paths import golden
from scripts.pipeline.verify import random_inputs
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, ModelSpec

GATE_RANDOM_ROWS = 64


def cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def has_convolutions(path: Path) -> bool:
    import onnx

    return any(
        node.op_type == "Conv" for node in onnx.load(str(path), load_external_data=False).graph.node
    )


def training_split(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(calibration rows, held-out rows, held-out labels) from the training data, for a
    single-input model that has a training data function; None otherwise."""
    if spec.training is None or spec.training.data is None or len(spec.inputs) != 1:
        return None
    data = import_target(spec.training.data)(
        seed=spec.training.seed, preprocess=spec.task.preprocess
    )
    return data.x_train, data.x_test, data.y_test


def calibration_rows(spec: ModelSpec, split) -> dict[str, np.ndarray]:
    size = spec.quantize.calibration_size
    if split is not None:
        return {spec.inputs[0].name: split[0][:size].astype(spec.inputs[0].numpy)}
    return random_inputs(spec, size, np.random.default_rng(1))


class Calibration:
    """onnxruntime's CalibrationDataReader protocol: one row at a time."""

    def __init__(self, rows: dict[str, np.ndarray]):
        count = len(next(iter(rows.values())))
        self.items = iter([{k: v[i : i + 1] for k, v in rows.items()} for i in range(count)])

    def get_next(self):
        return next(self.items, None)


def without_shape_hints(fp32: Path, out: Path) -> Path:
    """A copy without value_info: the exporter's shape hints (e.g. of transposed Gemm weights)
    disagree with onnxruntime.quantization's own inference ("Inferred shape and existing shape
    differ"); they are optional, so the quantiser re-infers them."""
    import onnx

    model = onnx.load(str(fp32))
    del model.graph.value_info[:]
    onnx.save(model, str(out))
    return out


def quantize(spec: ModelSpec, fp32: Path, out: Path, split) -> dict:
    """Write the int8 model; returns how it was quantised."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    q = spec.quantize
    method = q.method if q.method != "auto" else ("static" if has_convolutions(fp32) else "dynamic")
    reduce_range = (not cpu_has_vnni()) if q.reduce_range is None else q.reduce_range
    common: dict[str, Any] = dict(
        per_channel=q.per_channel,
        reduce_range=reduce_range,
        nodes_to_exclude=list(q.exclude),
        weight_type=QuantType.QInt8,
    )
    prepared = without_shape_hints(fp32, out.with_suffix(".prepared.onnx"))
    root_logger, level = logging.getLogger(), logging.getLogger().level
    root_logger.setLevel(
        logging.ERROR
    )  # its "consider pre-processing" advice on the root logger, per model
    try:
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(out), **common)
        else:
            quantize_static(
                str(prepared),
                str(out),
                # onnxruntime only calls get_next(): Calibration reads rows without its base
                Calibration(calibration_rows(spec, split)),  # pyright: ignore[reportArgumentType]
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                **common,
            )
    finally:
        root_logger.setLevel(level)
        prepared.unlink(missing_ok=True)
    return {
        "method": method,
        "per_channel": q.per_channel,
        "reduce_range": reduce_range,
        "excluded": list(q.exclude),
        "bytes": out.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
    }


def gate(spec: ModelSpec, fp32: Runner, int8: Runner, golden: dict[str, np.ndarray], split) -> dict:
    """The task metric of fp32 and int8, and whether the drop is within the spec's limit."""
    q = spec.quantize
    if spec.task.serving.labelled and split is not None:
        rows = {spec.inputs[0].name: split[1].astype(spec.inputs[0].numpy)}
        labels = split[2].reshape(-1)
        values = [float((top1(spec, run(rows)[0]) == labels).mean()) for run in (fp32, int8)]
        metric, drop, limit = (
            "held-out accuracy",
            (values[0] - values[1]) * 100,
            q.max_accuracy_drop,
        )
    else:
        extra = random_inputs(spec, GATE_RANDOM_ROWS, np.random.default_rng(2))
        rows = {k: np.concatenate([golden[k], extra[k]]) for k in golden}
        reference, quantised = fp32(rows), int8(rows)
        if spec.task.serving.labelled:
            agreement = float((top1(spec, reference[0]) == top1(spec, quantised[0])).mean())
            metric, values = "top-1 agreement with fp32", [1.0, agreement]
            drop, limit = (1.0 - agreement) * 100, q.max_accuracy_drop
        else:
            error = max(relative_error(a, b) for a, b in zip(quantised, reference))
            metric, values = "relative error of the outputs vs fp32", [0.0, error]
            drop, limit = error, q.max_relative_error
    return {
        "metric": metric,
        "fp32": values[0],
        "int8": values[1],
        "drop": drop,
        "limit": limit,
        "passed": bool(drop <= limit),
    }


def top1(spec: ModelSpec, output: np.ndarray) -> np.ndarray:
    return class_scores(output, spec.task.output).argmax(axis=1)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-12))


def worst_weights(fp32: Path, int8: Path, count: int = 3) -> list[str]:
    """QDQ models: the weights with the lowest signal-to-quantisation-noise ratio (dB)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_weight_error, create_weight_matching

    try:
        errors = compute_weight_error(create_weight_matching(str(fp32), str(int8)))
    except Exception:  # not a QDQ model (dynamic quantisation) or nothing to match
        return []
    return [
        f"{name} ({sqnr:.1f} dB)"
        for name, sqnr in sorted(errors.items(), key=lambda kv: kv[1])[:count]
    ]


def gate_failure(spec: ModelSpec, result: dict, culprits: list[str]) -> BuildError:
    unit = "points" if result["metric"] != "relative error of the outputs vs fp32" else ""
    where = f"; the weights that lose most: {', '.join(culprits)}" if culprits else ""
    return BuildError(
        f"{spec.name}: onnx_int8 fails its accuracy gate: "
        f"{result['metric']} {result['fp32']:.4f} (fp32) "
        f"vs {result['int8']:.4f} (int8), a drop of {result['drop']:.2f} {unit} > the limit "
        f"{result['limit']:g}{where}; keep those layers in fp32 (quantize.exclude: [node names]), "
        "try quantize.method, or raise quantize.max_accuracy_drop"
    )


def build_int8(spec: ModelSpec, layout: Layout, out: Path, fp32: Runner) -> dict:
    """model.int8.onnx beside the verified model.onnx, or BuildError when it fails its gate
    (the int8 file is then removed). Returns the figures for verify.json."""
    fmt = FORMATS["onnx_int8"]
    assert fmt.quantized_from, "onnx_int8 is quantised from another format"
    source, target = out / FORMATS[fmt.quantized_from].file, out / fmt.file
    split = training_split(spec)
    try:
        how = quantize(spec, source, target, split)
        int8 = load_runner(fmt.name, target, spec.tensor_names, output_names=spec.output_names)
    except Exception as exc:  # an op onnxruntime cannot quantise, a node name that does not exist
        target.unlink(missing_ok=True)
        raise BuildError(
            f"{spec.name}: onnx_int8: onnxruntime.quantization failed: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from exc
    result = gate(spec, fp32, int8, golden(spec, layout), split)
    if not result["passed"]:
        culprits = worst_weights(source, target) if how["method"] == "static" else []
        target.unlink()
        raise gate_failure(spec, result, culprits)
    return {**how, "gate": result}
