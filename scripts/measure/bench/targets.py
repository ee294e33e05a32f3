"""Comparisons and targets: each served point as ratios to the stock setup of its runtime and
to the in-process limit, and where each of the project's performance targets stands."""

from __future__ import annotations

import os

from scripts.measure.bench.inprocess import LIMIT_FORMATS
from scripts.measure.bench.setups import SETUP_BY_KEY, SETUPS, STOCK_OF

STATUS = {True: "met", False: "missed", None: "not measured"}
OURS = [
    s.key for s in SETUPS if not s.stock and not s.int8
]  # this project's setups, one per runtime


def find_point(
    points: list[dict], model: str, setup: str, protocol: str, concurrency: int
) -> dict | None:
    """The measured (not failed) point with these coordinates."""
    for p in points:
        if (p["model"], p["setup"], p["protocol"], p["concurrency"]) == (
            model,
            setup,
            protocol,
            concurrency,
        ) and "error" not in p:
            return p
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b


def comparisons(points: list[dict], limits: dict[str, dict]) -> list[dict]:
    """Per measured point: throughput and p99 as ratios to the stock setup of the same runtime
    (same protocol, same concurrency) and throughput as a ratio to the in-process limit."""
    out = []
    for p in points:
        if "error" in p:
            continue
        stock = find_point(
            points,
            p["model"],
            STOCK_OF[SETUP_BY_KEY[p["setup"]].runtime],
            p["protocol"],
            p["concurrency"],
        )
        limit = limits.get(p["model"], {})
        out.append(
            {
                "model": p["model"],
                "setup": p["setup"],
                "protocol": p["protocol"],
                "concurrency": p["concurrency"],
                "throughput": p["throughput"],
                "throughput_vs_stock": ratio(p["throughput"], stock and stock["throughput"]),
                "p99_vs_stock": ratio(p["p99_ms"], stock and stock["p99_ms"]),
                "throughput_vs_limit_batch1": ratio(
                    p["throughput"], (limit.get("batch1") or {}).get("throughput")
                ),
                "throughput_vs_limit_max_batch": ratio(
                    p["throughput"], (limit.get("max_batch") or {}).get("throughput")
                ),
            }
        )
    return out


def stock_target(points, model: str, runtime: str, concurrency: int, factor: float) -> dict:
    """Ours >= factor x stock throughput, with p99 no worse than stock's, per protocol."""
    ours_key, stock_key = runtime, STOCK_OF[runtime]
    checks, reasons = [], []
    for protocol in SETUP_BY_KEY[ours_key].protocols:
        ours = find_point(points, model, ours_key, protocol, concurrency)
        stock = find_point(points, model, stock_key, protocol, concurrency)
        if ours is None or stock is None:
            checks.append({"protocol": protocol, "met": None})
            reasons.append(f"{protocol}: not measured (see the errors in bench.json)")
            continue
        speedup = ours["throughput"] / stock["throughput"]
        p99_ok = ours["p99_ms"] <= stock["p99_ms"]
        met = speedup >= factor and p99_ok
        checks.append(
            {
                "protocol": protocol,
                "met": met,
                "throughput_ratio": speedup,
                "p99_ms": ours["p99_ms"],
                "stock_p99_ms": stock["p99_ms"],
                "throughput": ours["throughput"],
                "stock_throughput": stock["throughput"],
            }
        )
        reasons.append(
            f"{protocol}: {ours['throughput']:.0f}/s vs {stock['throughput']:.0f}/s = {speedup:.2f}x "
            f"(needs {factor}x), p99 {ours['p99_ms']:.1f} ms vs {stock['p99_ms']:.1f} ms"
            + ("" if p99_ok else " (worse)")
        )
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons)}


def limit_target(points, limits, model: str, concurrency: int, factor: float) -> dict:
    """Served throughput >= factor x the in-process limit at the max batch size, both runtimes."""
    limit = limits.get(model, {}).get("max_batch")
    checks, reasons = [], []
    for runtime in OURS:
        for protocol in SETUP_BY_KEY[runtime].protocols:
            ours = find_point(points, model, runtime, protocol, concurrency)
            if ours is None or limit is None:
                checks.append({"runtime": runtime, "protocol": protocol, "met": None})
                reasons.append(f"{runtime} {protocol}: not measured")
                continue
            share = ours["throughput"] / limit["throughput"]
            checks.append(
                {
                    "runtime": runtime,
                    "protocol": protocol,
                    "met": share >= factor,
                    "ratio": share,
                    "throughput": ours["throughput"],
                    "limit": limit["throughput"],
                }
            )
            reasons.append(
                f"{runtime} {protocol}: {ours['throughput']:.0f}/s = {share:.2f}x of "
                f"{limit['throughput']:.0f}/s (needs {factor}x)"
            )
    return {
        "checks": checks,
        "met": all_met(checks),
        "detail": "; ".join(reasons),
        "limit": limit and {k: limit[k] for k in ("format", "threads", "batch", "throughput")},
    }


def all_met(checks: list[dict]) -> bool | None:
    """None (not measured) as soon as one check is, rather than a miss."""
    values = [c["met"] for c in checks]
    if any(v is None for v in values):
        return None
    return all(values)


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


def every_load_target(
    points, model: str, runtime: str, levels: list[int], slack_ms: float = 0.3
) -> dict:
    """Ours >= stock throughput at every concurrency, per protocol, and p50 at concurrency 1 no
    more than slack_ms above stock's."""
    checks, reasons = [], []
    for protocol in SETUP_BY_KEY[runtime].protocols:
        for level in levels:
            ours = find_point(points, model, runtime, protocol, level)
            stock = find_point(points, model, STOCK_OF[runtime], protocol, level)
            if ours is None or stock is None:
                checks.append({"protocol": protocol, "concurrency": level, "met": None})
                reasons.append(f"{protocol} c={level}: not measured")
                continue
            speedup = ours["throughput"] / stock["throughput"]
            met = speedup >= 1.0 and (level != 1 or ours["p50_ms"] <= stock["p50_ms"] + slack_ms)
            checks.append(
                {
                    "protocol": protocol,
                    "concurrency": level,
                    "met": met,
                    "throughput_ratio": speedup,
                    "p50_ms": ours["p50_ms"],
                    "stock_p50_ms": stock["p50_ms"],
                }
            )
            reasons.append(
                f"{protocol} c={level}: {speedup:.2f}x"
                + (f", p50 {ours['p50_ms']:.2f} vs {stock['p50_ms']:.2f} ms" if level == 1 else "")
            )
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons)}


def int8_target(int8: dict, model: str, factor: float = 1.5, max_drop_points: float = 1.0) -> dict:
    """int8 in-process >= factor x fp32 ONNX at the max batch, losing at most max_drop_points."""
    figures = int8.get(model)
    rows = (figures or {}).get("in_process") or []
    if not rows or "gate" not in figures:
        return {"checks": [], "met": None, "detail": "no int8 export or no in-process figures"}
    top, gate = rows[-1], figures["gate"]
    drop_ok = gate["drop"] <= max_drop_points
    met = top["ratio"] >= factor and drop_ok
    size = (
        f", {figures['bytes'] / figures['fp32_bytes']:.0%} of the fp32 size"
        if figures.get("fp32_bytes")
        else ""
    )
    return {
        "checks": [
            {"met": met, "ratio": top["ratio"], "batch": top["batch"], "drop": gate["drop"]}
        ],
        "met": met,
        "detail": f"batch {top['batch']}: {top['int8']:.0f}/s vs {top['fp32']:.0f}/s = {top['ratio']:.2f}x "
        f"(needs {factor}x); {gate['metric']} {gate['fp32']:.4f} -> {gate['int8']:.4f} "
        f"(drop {gate['drop']:.2f} points){size}",
    }


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


def evaluate_targets(points, limits, in_proc_by_model, int8: dict | None = None) -> list[dict]:
    """The project's performance targets, each with a status and a limiting factor."""
    int8 = int8 or {}
    targets = [
        (
            {
                "id": "digits_triton_vs_per_request",
                "model": "digits_cnn",
                "text": "digits_cnn at concurrency 16: this project's Triton >= 1.5x the per-request "
                "Python-backend setup, p99 no worse",
                **stock_target(points, "digits_cnn", "triton", 16, 1.5),
            },
            ["triton", STOCK_OF["triton"]],
        ),
        (
            {
                "id": "digits_torchserve_vs_stock",
                "model": "digits_cnn",
                "text": "digits_cnn at concurrency 16: this project's TorchServe >= 3x the stock "
                "BaseHandler route, p99 no worse",
                **stock_target(points, "digits_cnn", "torchserve", 16, 3.0),
            },
            ["torchserve", STOCK_OF["torchserve"]],
        ),
        (
            {
                "id": "sentiment_served_vs_in_process",
                "model": "sentiment_lstm",
                "text": "sentiment_lstm at concurrency 64: served throughput >= 0.8x in-process "
                "throughput at the max batch size, on both runtimes",
                **limit_target(points, limits, "sentiment_lstm", 64, 0.8),
            },
            OURS,
        ),
    ]
    for model in ("digits_cnn", "sentiment_lstm"):
        for runtime in OURS:
            targets.append(
                (
                    {
                        "id": f"{model}_{runtime}_every_load",
                        "model": model,
                        "text": f"{model} on {runtime}: >= 1.0x stock throughput at concurrency 1, 4, 16 "
                        "and 64 (every protocol), p50 at concurrency 1 <= stock's + 0.3 ms",
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
    for target, keys in targets:
        target["status"] = STATUS[target["met"]]
        target["limited_by"] = limiting_factor(
            points, in_proc_by_model.get(target["model"], []), target["model"], keys
        )
    for model in int8:
        target = {
            "id": f"{model}_int8_in_process",
            "model": model,
            "text": f"{model}: int8 in-process >= 1.5x fp32 ONNX at the max batch, <= 1 point of accuracy lost",
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
