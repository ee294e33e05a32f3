"""The project's performance targets: each checked against the measured points
(target_checks.py), with its status and, in words from the numbers, what limits it.
"""

from __future__ import annotations

import os

from scripts.measure.bench.comparisons import DIRECT_OF, OURS, find_point
from scripts.measure.bench.inprocess import LIMIT_FORMATS
from scripts.measure.bench.setups import BENCHED, STOCK_OF, bench_of
from scripts.measure.tune.rule import P50_SLACK_MS
from scripts.measure.bench.target_checks import (
    GATEWAY_P50_ADDED_MS,
    GATEWAY_THROUGHPUT_KEPT,
    every_load_target,
    gateway_target,
    int8_target,
    limit_target,
    stock_target,
)

STATUS = {True: "met", False: "missed", None: "not measured"}


def limiting_factor(points, in_proc: list[dict], model: str, runtime_keys: list[str]) -> str:
    """Words from the numbers: where the time goes when a target is missed (or what bounds it)."""
    batch1 = [r for r in in_proc if r["batch"] == 1 and r["format"] in LIMIT_FORMATS]
    compute_ms = min(r["p50_ms"] for r in batch1) if batch1 else None
    parts = []
    for key in runtime_keys:
        c1 = find_point(points, model, key, "http", 1)
        if c1 and compute_ms is not None:
            overhead = max(c1["p50_ms"] - compute_ms, 0)
            parts.append(
                f"{key}: one request takes {c1['p50_ms']:.2f} ms at concurrency 1 against "
                f"{compute_ms:.2f} ms of model compute in-process, so ~{overhead:.2f} ms "
                "per request is serving overhead (HTTP/gRPC, (de)serialisation, IPC to the worker)"
            )
    parts.append(
        f"the load generator (perf_analyzer), the server front-end and the model share "
        f"{os.cpu_count()} cores"
    )
    return "; ".join(parts)


def int8_limited_by(int8: dict, model: str) -> str:
    rows = (int8.get(model) or {}).get("in_process") or []
    if not rows:
        return "-"
    return (
        "int8 arithmetic pays off only when matrix products dominate; on a model this small the "
        "quantise/dequantise steps around each layer cost as much as they save"
        if rows[-1]["ratio"] < 1.5
        else "-"
    )


def evaluate_targets(
    points, limits, in_proc_by_model, int8: dict | None = None, gateway: list[dict] | None = None
) -> list[dict]:
    """The project's performance targets, each with a status and a limiting factor."""
    int8 = int8 or {}
    targets = [
        (
            {
                "id": f"digits_{runtime.name}_vs_stock",
                "model": "digits_cnn",
                "text": f"digits_cnn at concurrency 16: this project's {runtime.title} >= "
                f"{bar.ratio:g}x {bar.stock_words}, p99 no worse",
                **stock_target(points, "digits_cnn", runtime.name, 16, bar.ratio),
            },
            [runtime.name, STOCK_OF[runtime.name]],
        )
        for runtime, bar in [(r, bench_of(r).stock_bar) for r in BENCHED]
    ]
    targets += [
        (
            {
                "id": "sentiment_served_vs_in_process",
                "model": "sentiment_lstm",
                "text": "sentiment_lstm at concurrency 64: served throughput >= 0.8x in-process "
                "throughput at the max batch size, on both runtimes",
                **limit_target(points, limits, "sentiment_lstm", 64, 0.8),
            },
            OURS,
        )
    ]
    for model in ("digits_cnn", "sentiment_lstm"):
        for runtime in OURS:
            targets.append(
                (
                    {
                        "id": f"{model}_{runtime}_every_load",
                        "model": model,
                        "text": f"{model} on {runtime}: >= 1.0x stock throughput at "
                        "concurrency 1, 4, 16 and 64 (every protocol), p50 at concurrency 1 <= "
                        f"stock's + {P50_SLACK_MS} ms",
                        **every_load_target(points, model, runtime, [1, 4, 16, 64]),
                    },
                    [runtime, STOCK_OF[runtime]],
                )
            )
            targets.append(
                (
                    {
                        "id": f"{model}_{runtime}_3x_at_64",
                        "model": model,
                        "text": f"{model} on {runtime}: >= 3x stock throughput at concurrency 64",
                        **stock_target(points, model, runtime, 64, 3.0),
                    },
                    [runtime, STOCK_OF[runtime]],
                )
            )
    targets += [
        (
            {
                "id": f"digits_cnn_{runtime}_gateway",
                "model": "digits_cnn",
                "text": f"digits_cnn on {runtime} through the gateway (HTTPS, a client key) "
                f"against direct: p50 added at concurrency 1 <= {GATEWAY_P50_ADDED_MS} ms, "
                f">= {GATEWAY_THROUGHPUT_KEPT}x direct throughput at 64",
                **gateway_target(gateway or [], "digits_cnn", runtime),
            },
            [runtime],
        )
        for runtime in DIRECT_OF.values()
    ]
    for target, keys in targets:
        target["status"] = STATUS[target["met"]]
        target["limited_by"] = limiting_factor(
            points, in_proc_by_model.get(target["model"], []), target["model"], keys
        )
    for model in int8:
        target = {
            "id": f"{model}_int8_in_process",
            "model": model,
            "text": f"{model}: int8 in-process >= 1.5x fp32 ONNX at the max batch, <= 1 point "
            "of accuracy lost",
            **int8_target(int8, model),
        }
        targets.append(
            (
                {
                    **target,
                    "status": STATUS[target["met"]],
                    "limited_by": int8_limited_by(int8, model),
                },
                [],
            )
        )
    return [target for target, _ in targets]
