"""Compare exported formats with eager PyTorch on fresh random inputs.

Used by `export` (every format, batch sizes 1, 3 and the max) and later by the served-endpoint
checks. Over tolerance is a VerificationError naming the model, format, batch size, the worst
element's index and both values.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from handlers.runners import Runner
from scripts.spec import ModelSpec, TensorSpec, Tolerance
from scripts.spec.errors import VerificationError

DYNAMIC_AXIS_SIZE = 5  # size drawn for a non-batch dynamic axis (never the tracing size)


@dataclass
class Comparison:
    max_abs_error: float
    max_rel_error: float
    passed: bool
    worst_index: list[int]
    actual: float
    expected: float


def verification_batch_sizes(spec: ModelSpec) -> list[int]:
    """1, 3 and the max batch size; tracing uses 2, so none of these is the traced size."""
    return sorted({1, 3, spec.batching.max_batch_size or 3})


def random_tensor(
    tensor: TensorSpec, batch: int, rng: np.random.Generator, axis_size: int = DYNAMIC_AXIS_SIZE
) -> np.ndarray:
    """Random values of the tensor's dtype and range. A leading -1 axis (the batch axis, or a
    model without one's first dynamic axis) gets `batch` entries, other -1 axes `axis_size`,
    fixed axes their size."""
    shape = [batch if tensor.shape[0] == -1 else tensor.shape[0]]
    shape += [axis_size if d == -1 else d for d in tensor.shape[1:]]
    dtype = tensor.numpy
    if tensor.dtype == "bool":
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        low, high = tensor.range or (0, 100)
        return rng.integers(int(low), int(high), size=shape, endpoint=True).astype(dtype)
    if tensor.range:
        return rng.uniform(*tensor.range, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def random_inputs(
    spec: ModelSpec, batch: int, rng: np.random.Generator, axis_size: int = DYNAMIC_AXIS_SIZE
) -> dict[str, np.ndarray]:
    inputs = {t.name: random_tensor(t, batch, rng, axis_size) for t in spec.inputs}
    pad = spec.batching.pad
    if (
        pad is not None and pad.mask is not None
    ):  # a mask as padding makes it: 1s, then 0s (never all 0s)
        mask = inputs[pad.mask]
        lengths = rng.integers(1, mask.shape[-1], size=mask.shape[:-1], endpoint=True)
        inputs[pad.mask] = (np.arange(mask.shape[-1]) < lengths[..., None]).astype(mask.dtype)
    return inputs


def compare(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> Comparison:
    """Elementwise |actual - expected| <= atol + rtol * |expected| (integers: exact)."""
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} differs from eager {expected.shape}")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    exact = not np.issubdtype(expected.dtype, np.floating)
    atol, rtol = (0.0, 0.0) if exact else (tolerance.atol, tolerance.rtol)
    diff = np.abs(a - e)
    diff[np.isnan(a) & np.isnan(e)] = 0.0  # NaN where eager has NaN too is agreement
    diff[np.isnan(diff)] = np.inf  # NaN on one side only is always a failure
    excess = diff - (atol + rtol * np.abs(np.nan_to_num(e)))
    if diff.size == 0:
        return Comparison(0.0, 0.0, True, [], 0.0, 0.0)
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return Comparison(
        max_abs_error=float(diff.max()),
        max_rel_error=float(
            (diff / np.maximum(np.abs(np.nan_to_num(e)), np.finfo(np.float32).tiny)).max()
        ),
        passed=bool(np.all(excess <= 0)),
        worst_index=[int(i) for i in worst],
        actual=float(a[worst]),
        expected=float(e[worst]),
    )


def verify_formats(
    spec: ModelSpec,
    reference: Runner,
    runners: dict[str, Runner],
    report_path: Path,
    skipped: dict[str, str] | None = None,
) -> dict:
    """Run every format and the eager reference on the same fresh inputs; write verify.json.
    A failing format raises VerificationError listing every failure, or, when `skipped` is
    given (`formats: auto`), is recorded there with its first failure and left out."""
    seed = secrets.randbits(32)  # fresh inputs every build; the seed is recorded to reproduce
    rng = np.random.default_rng(seed)
    results, failures = [], {}
    for batch in verification_batch_sizes(spec):
        inputs = random_inputs(spec, batch, rng)
        expected = reference(inputs)
        for fmt, runner in runners.items():
            try:
                outputs = runner(inputs)
            except Exception as exc:  # e.g. a shape the trace baked in
                failures.setdefault(fmt, []).append(
                    f"{spec.name}: {fmt} fails at batch {batch}: "
                    f"{type(exc).__name__}: {first_line(exc)}"
                )
                continue
            for tensor, got, want in zip(spec.outputs, outputs, expected):
                row = {"format": fmt, "batch_size": batch, "output": tensor.name}
                try:
                    comparison = compare(np.asarray(got), np.asarray(want), spec.tolerance)
                except ValueError as exc:
                    failures.setdefault(fmt, []).append(
                        f"{spec.name}: {fmt} at batch {batch}: output {tensor.name!r}: {exc}"
                    )
                    results.append({**row, "passed": False, "error": str(exc)})
                    continue
                results.append({**row, **asdict(comparison)})
                if not comparison.passed:
                    failures.setdefault(fmt, []).append(
                        describe_failure(spec, fmt, batch, tensor.name, comparison)
                    )
    if skipped is not None:
        skipped.update({fmt: problems[0] for fmt, problems in failures.items()})
        results = [r for r in results if r["format"] not in failures]
    report = {
        "model": spec.name,
        "version": spec.version,
        "seed": seed,
        "tolerance": spec.tolerance.model_dump(),
        "passed": skipped is not None or not failures,
        "results": results,
        "skipped": skipped or {},
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if failures and skipped is None:
        raise VerificationError([p for problems in failures.values() for p in problems])
    return report


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def describe_failure(spec: ModelSpec, fmt: str, batch: int, output: str, c: Comparison) -> str:
    t = spec.tolerance
    return (
        f"{spec.name}: {fmt} at batch {batch} disagrees with eager PyTorch: output {output!r} "
        f"index {tuple(c.worst_index)}: got {c.actual:.9g}, eager {c.expected:.9g} "
        f"(|diff| {abs(c.actual - c.expected):.3g} > atol {t.atol:g} + rtol {t.rtol:g}*|eager|)"
    )


def worst_errors(report: dict) -> dict[str, float]:
    """Per format: the largest absolute error over batch sizes and outputs."""
    worst: dict[str, float] = {}
    for row in report.get("results", []):  # a generation model's report has checks instead
        worst[row["format"]] = max(
            worst.get(row["format"], 0.0), row.get("max_abs_error", float("inf"))
        )
    return worst
