"""`make bench`'s int8 rows: each model that passed its int8 gate served as `<name>_int8` (its
gated ONNX, every other setting as the spec says) beside the fp32 deployment, and the figures
behind them: accuracy and size from export's verify.json, int8 against fp32 in-process."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats
from scripts.measure.variants import int8_variant, scratch_layout, serve_variants
from scripts.spec import ModelSpec, UserError

INT8 = FORMATS["onnx_int8"]


def with_int8(specs: list[ModelSpec], layout: Layout) -> list[ModelSpec]:
    return [s for s in specs if INT8.name in exported_formats(s, layout)]


@contextlib.contextmanager
def int8_deployment(runtime, specs: list[ModelSpec], layout: Layout, workdir: Path, log=print):
    """[(model, setup, protocol, LoadTarget)] for the int8 variants on one server of this
    runtime."""
    specs = with_int8(specs, layout)
    if not specs:
        yield []
        return
    pairs = [(s, int8_variant(s)) for s in specs]
    scratch = scratch_layout(layout, workdir / "checkout")
    with contextlib.ExitStack() as stack:
        try:
            targets = stack.enter_context(serve_variants(runtime, pairs, layout, scratch, workdir))
        except UserError as error:  # no int8 rows for this runtime; the rest of the bench goes on
            log(f"{runtime.name}: int8 variants not served: {str(error).splitlines()[0]}")
            targets = {}
        yield [
            (s.name, f"{runtime.name}_int8", "http", targets[v.name])
            for s, v in pairs
            if v.name in targets and not isinstance(targets[v.name], str)
        ]


def gate_figures(spec: ModelSpec, layout: Layout) -> dict | None:
    """What export recorded about the int8 model: method, sizes, the accuracy gate."""
    try:
        return json.loads(layout.artifact(spec).report.read_text()).get("int8")
    except (OSError, ValueError):
        return None


def best(results: list[dict], fmt: str | None, batch: int) -> dict | None:
    rows = [r for r in results if r["format"] == fmt and r["batch"] == batch]
    return max(rows, key=lambda r: r["throughput"]) if rows else None


def in_process_ratios(spec: ModelSpec, results: list[dict]) -> list[dict]:
    """int8 against fp32 ONNX in-process at batch 1 and the max batch (best thread count each)."""
    rows = []
    for batch in sorted({1, max(spec.batching.max_batch_size, 1)}):
        fp32, int8 = best(results, INT8.quantized_from, batch), best(results, INT8.name, batch)
        if fp32 and int8:
            rows.append(
                {
                    "batch": batch,
                    "fp32": fp32["throughput"],
                    "int8": int8["throughput"],
                    "ratio": int8["throughput"] / fp32["throughput"],
                }
            )
    return rows


def summary(specs: list[ModelSpec], layout: Layout, in_proc: dict[str, list[dict]]) -> dict:
    """{model: {gate figures, sizes, in-process ratios}} for the models with an int8 export."""
    return {
        s.name: {
            **(gate_figures(s, layout) or {}),
            "in_process": in_process_ratios(s, in_proc.get(s.name, [])),
        }
        for s in with_int8(specs, layout)
    }
