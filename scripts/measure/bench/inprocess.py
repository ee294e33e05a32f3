"""The in-process limit: each exported format (and eager PyTorch) run directly on the golden
inputs, no server in between; the figure every served throughput is compared with."""

from __future__ import annotations

import time

import numpy as np

from handlers.formats import FORMATS
from handlers.runners import load_runner, torch_runner
from scripts.pipeline.layout import Layout
from scripts.pipeline.loading import load_reference
from scripts.pipeline.paths import exported_formats, golden
from scripts.spec import ModelSpec

LIMIT_FORMATS = ("eager", "onnx")  # what a user would run without a server
OTHER_FORMATS = [f.name for f in FORMATS.values() if f.measured]  # int8: when it passed its gate


def tiled(rows: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` rows cycled from the golden examples."""
    return {
        n: np.ascontiguousarray(np.resize(v, (batch, *v.shape[1:])).astype(v.dtype))
        for n, v in rows.items()
    }


def time_runner(
    run, inputs: dict[str, np.ndarray], batch: int, min_time_s: float, warmup: int = 3
) -> dict:
    """Calls until min_time_s has passed (at least 5): inferences/s and per-call latency."""
    for _ in range(warmup):
        run(inputs)
    latencies = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run(inputs)
        latencies.append(time.perf_counter() - t0)
        if time.perf_counter() - started >= min_time_s and len(latencies) >= 5:
            break
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000.0
    return {
        "batch": batch,
        "throughput": batch * len(latencies) / elapsed,
        "calls": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def runner(spec: ModelSpec, layout: Layout, fmt: str, threads: int):
    """A callable {input: rows} -> outputs for one format, at this intra-op thread count."""
    if fmt == "eager":
        return torch_runner(
            load_reference(spec, layout).eval(), spec.tensor_names, spec.output_names
        )
    return load_runner(
        fmt,
        layout.artifact_dir(spec) / FORMATS[fmt].file,
        spec.tensor_names,
        threads,
        spec.output_names,
        owner=(spec.name, spec.version),
    )


def in_process(
    spec: ModelSpec, layout: Layout, min_time_s: float, threads: list[int]
) -> list[dict]:
    """Eager PyTorch, onnxruntime and every other exported format, at batch 1 and the max batch
    size, per intra-op thread count: inferences/s and per-call latency."""
    import torch

    rows = golden(spec, layout)
    batches = sorted({1, max(spec.batching.max_batch_size, 1)})
    formats = ["eager"] + [f for f in OTHER_FORMATS if f in exported_formats(spec, layout)]
    results = []
    saved = torch.get_num_threads()
    try:
        for count in threads:
            for fmt in formats:
                torch.set_num_threads(count)
                run = runner(spec, layout, fmt, count)
                for batch in batches:
                    results.append(
                        {
                            "format": fmt,
                            "threads": count,
                            **time_runner(run, tiled(rows, batch), batch, min_time_s),
                        }
                    )
    finally:
        torch.set_num_threads(saved)
    return results


def limit_of(results: list[dict], batch: int, formats=LIMIT_FORMATS) -> dict | None:
    """The in-process limit at a batch size: the best of eager PyTorch and onnxruntime (any
    thread count)."""
    candidates = [r for r in results if r["batch"] == batch and r["format"] in formats]
    return max(candidates, key=lambda r: r["throughput"]) if candidates else None


def limits(spec: ModelSpec, results: list[dict]) -> dict:
    """The limits the report compares with: at batch 1 and at the spec's max batch size."""
    return {
        "batch1": limit_of(results, 1),
        "max_batch": limit_of(results, max(spec.batching.max_batch_size, 1)),
    }
