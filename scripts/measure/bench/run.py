"""Step `bench`: one invocation, one machine, every setup measured side by side.

Per model (digits_cnn and sentiment_lstm in full, tabular_mlp briefly):
- the limit: in-process inference (eager PyTorch, onnxruntime, TorchScript, AOTInductor) at
  batch 1 and at the spec's max batch size, with 1 intra-op thread and with every core;
- per runtime plugin, its `bench_deployment`: this project's deployment exactly as built
  beside the stock setup a user tries first, in one server on free loopback ports;
- the same deployment through the gateway (scripts/gateway/, HTTPS with a client key), each
  target right after its direct one;
- the same deployment serving the gated int8 ONNX (`<name>_int8`) for models that export it;
- load from NVIDIA's perf_analyzer at each concurrency, each point a stable measurement window.

Writes reports/bench.json (every figure, machine, versions, exact commands), reports/bench.md
(tables, ratios to the stock setup and to the in-process limit, where each target stands) and
reports/bench_<model>_{throughput,latency}.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.measure.bench.inprocess import in_process
from scripts.measure.bench.inprocess import limits as limits_of
from scripts.measure.bench.int8 import int8_deployment
from scripts.measure.bench.int8 import summary as int8_summary
from scripts.measure.bench.points import RETRY_STABILITY, describe_point, perf_point
from scripts.measure.bench.report import machine_info, write_report
from scripts.measure.bench.setups import BENCHED, SETUPS, bench_of
from scripts.measure.bench.comparisons import comparisons, gateway_overhead, one_client
from scripts.measure.bench.gateway import through_gateway
from scripts.measure.bench.targets import evaluate_targets
from scripts.runtimes.registry import RUNTIMES
from scripts.spec import ModelSpec

FULL_MODELS = ("digits_cnn", "sentiment_lstm")
BRIEF_MODELS = ("tabular_mlp",)
CONCURRENCY = [1, 4, 16, 64]
QUICK_CONCURRENCY = [1, 16]
BRIEF_CONCURRENCY = [16]
# A measurement window is stable when 3 consecutive windows agree within 50% (throughput and
# latency); short windows keep the whole bench inside its time budget on a 2-core box.
MEASUREMENT = {"stability": 50, "max_trials": 4, "interval_ms": 1500}
QUICK_MEASUREMENT = {"stability": 50, "max_trials": 4, "interval_ms": 1000}


def plan_for(specs: list[ModelSpec], quick: bool) -> dict[str, list[int]]:
    """{model: concurrency levels}: brief models get one level, the others the full sweep."""
    full = QUICK_CONCURRENCY if quick else CONCURRENCY
    return {s.name: (BRIEF_CONCURRENCY if s.name in BRIEF_MODELS else full) for s in specs}


def in_process_all(
    specs: list[ModelSpec], layout: Layout, quick: bool, threads: list[int], log
) -> tuple[dict, dict]:
    """({model: in-process results}, {model: limits})."""
    results, limits = {}, {}
    for spec in specs:
        log(f"in-process: {spec.name}")
        brief = spec.name in BRIEF_MODELS
        results[spec.name] = in_process(spec, layout, 0.3 if quick or brief else 1.0, threads)
        limits[spec.name] = limits_of(spec, results[spec.name])
    return results, limits


def measure(
    targets: list[tuple], plan: dict[str, list[int]], workdir: Path, measurement: dict, log
) -> list[dict]:
    """Each load target at each concurrency of its model's plan; a model measured at one level
    only is measured over HTTP only (its figures are a sanity check, not a comparison)."""
    points = []
    for model, setup, protocol, target in targets:
        if len(plan[model]) == 1 and protocol != "http":
            continue
        for level in plan[model]:
            points.append(
                {
                    "model": model,
                    "setup": setup,
                    "protocol": protocol,
                    **perf_point(target, level, workdir, measurement),
                }
            )
            log(describe_point(points[-1]))
    return points


def beside_direct(targets: list[tuple], gated: list[tuple]) -> list[tuple]:
    """Each target through the gateway right after the same target called directly: the two
    are measured minutes apart at most, on a machine whose load drifts."""
    ordered = []
    for target in targets:
        ordered.append(target)
        model, _, protocol, load = target
        ordered += [g for g in gated if (g[0], g[2], g[3].model) == (model, protocol, load.model)]
    return ordered


def run_bench(
    models: list[ModelSpec],
    layout: Layout,
    out_dir: Path | None = None,
    quick: bool = False,
    log=print,
    in_process_only: bool = False,
) -> dict:
    """Measure everything, write bench.json / bench.md / PNGs into out_dir; returns the report."""
    started = time.monotonic()
    workdir = layout.state("bench")
    shutil.rmtree(workdir / "perf", ignore_errors=True)
    (workdir / "perf").mkdir(parents=True, exist_ok=True)
    measurement = QUICK_MEASUREMENT if quick else MEASUREMENT
    plan = plan_for(models, quick)
    threads = sorted({1, os.cpu_count() or 1})

    in_proc, limits = in_process_all(models, layout, quick, threads, log)
    timings = {"in_process_s": round(time.monotonic() - started, 1)}
    points = []
    for plugin in [] if in_process_only else BENCHED:
        t0 = time.monotonic()
        with (
            bench_of(plugin).deployment(models, layout, workdir, log) as deployed,
            through_gateway(plugin, deployed, models, layout, workdir / "gateway", log) as gated,
        ):
            targets = beside_direct(deployed.targets, gated)
            points += measure(targets, plan, workdir / "perf", measurement, log)
        with int8_deployment(plugin, models, layout, workdir / "int8", log) as targets:
            points += measure(targets, plan, workdir / "perf", measurement, log)
        timings[f"{plugin.name}_s"] = round(time.monotonic() - t0, 1)

    int8 = int8_summary(models, layout, in_proc)
    overhead = gateway_overhead(points)
    targets = evaluate_targets(points, limits, in_proc, int8, overhead)
    timings["total_s"] = round(time.monotonic() - started, 1)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": machine_info(),
        "invocation": " ".join([Path(sys.executable).name, *sys.argv]),
        "measurement": {
            **measurement,
            "concurrency": plan,
            "retry_stability": RETRY_STABILITY,
            "in_process_threads": threads,
        },
        "setups": {
            s.key: {
                "label": s.label,
                "runtime": s.runtime,
                "stock": s.stock,
                "protocols": list(s.protocols),
            }
            for s in SETUPS
        },
        "models": {s.name: model_summary(s, layout) for s in models},
        "in_process": in_proc,
        "limits": limits,
        "int8": int8,
        "points": points,
        "comparisons": comparisons(points, limits),
        "one_client": one_client(points),
        "gateway": overhead,
        "targets": targets,
        "timings": timings,
    }
    write_report(report, out_dir or layout.reports)
    return report


def model_summary(spec: ModelSpec, layout: Layout) -> dict:
    """The spec settings a reader needs next to the figures, and what each runtime serves."""
    return {
        "max_batch_size": spec.batching.max_batch_size,
        "max_queue_delay_ms": spec.batching.max_queue_delay_ms,
        "serving_format": spec.serving.format,
        "workers": spec.serving.workers.model_dump(),
        "instances": spec.serving.instances,
        "threads": spec.serving.threads,
        "per_runtime": {r: s.model_dump(exclude_none=True) for r, s in spec.per_runtime.items()},
        "served_formats": {
            r.name: r.artifacts.served_format(spec, layout) for r in RUNTIMES.values()
        },
    }
