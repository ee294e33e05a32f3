"""Comparisons and targets: each served point as ratios to the stock setup of its runtime and
to the in-process limit, and where each of the project's performance targets stands."""
from __future__ import annotations

import os

from scripts.measure.bench.inprocess import LIMIT_FORMATS
from scripts.measure.bench.setups import SETUP_BY_KEY, SETUPS, STOCK_OF

STATUS = {True: "met", False: "missed", None: "not measured"}
OURS = [s.key for s in SETUPS if not s.stock]      # this project's setups, one per runtime


def find_point(points: list[dict], model: str, setup: str, protocol: str, concurrency: int) -> dict | None:
    """The measured (not failed) point with these coordinates."""
    for p in points:
        if (p["model"], p["setup"], p["protocol"], p["concurrency"]) == (model, setup, protocol, concurrency) \
                and "error" not in p:
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
        stock = find_point(points, p["model"], STOCK_OF[SETUP_BY_KEY[p["setup"]].runtime], p["protocol"],
                           p["concurrency"])
        limit = limits.get(p["model"], {})
        out.append({"model": p["model"], "setup": p["setup"], "protocol": p["protocol"],
                    "concurrency": p["concurrency"], "throughput": p["throughput"],
                    "throughput_vs_stock": ratio(p["throughput"], stock and stock["throughput"]),
                    "p99_vs_stock": ratio(p["p99_ms"], stock and stock["p99_ms"]),
                    "throughput_vs_limit_batch1": ratio(p["throughput"], (limit.get("batch1") or {}).get("throughput")),
                    "throughput_vs_limit_max_batch": ratio(p["throughput"],
                                                           (limit.get("max_batch") or {}).get("throughput"))})
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
        checks.append({"protocol": protocol, "met": met, "throughput_ratio": speedup,
                       "p99_ms": ours["p99_ms"], "stock_p99_ms": stock["p99_ms"],
                       "throughput": ours["throughput"], "stock_throughput": stock["throughput"]})
        reasons.append(f"{protocol}: {ours['throughput']:.0f}/s vs {stock['throughput']:.0f}/s = {speedup:.2f}x "
                       f"(needs {factor}x), p99 {ours['p99_ms']:.1f} ms vs {stock['p99_ms']:.1f} ms"
                       + ("" if p99_ok else " (worse)"))
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
            checks.append({"runtime": runtime, "protocol": protocol, "met": share >= factor,
                           "ratio": share, "throughput": ours["throughput"], "limit": limit["throughput"]})
            reasons.append(f"{runtime} {protocol}: {ours['throughput']:.0f}/s = {share:.2f}x of "
                           f"{limit['throughput']:.0f}/s (needs {factor}x)")
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons),
            "limit": limit and {k: limit[k] for k in ("format", "threads", "batch", "throughput")}}


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
            parts.append(f"{key}: one request takes {c1['p50_ms']:.2f} ms at concurrency 1 against "
                         f"{compute_ms:.2f} ms of model compute in-process, so ~{overhead:.2f} ms "
                         "per request is serving overhead (HTTP/gRPC, (de)serialisation, IPC to the worker)")
    parts.append(f"the load generator (perf_analyzer), the server front-end and the model share "
                 f"{os.cpu_count()} cores")
    return "; ".join(parts)


def evaluate_targets(points, limits, in_proc_by_model) -> list[dict]:
    """The project's three performance targets, each with a status and a limiting factor."""
    targets = [
        ({"id": "digits_triton_vs_per_request", "model": "digits_cnn",
          "text": "digits_cnn at concurrency 16: this project's Triton >= 1.5x the per-request "
                  "Python-backend setup, p99 no worse",
          **stock_target(points, "digits_cnn", "triton", 16, 1.5)}, ["triton", STOCK_OF["triton"]]),
        ({"id": "digits_torchserve_vs_stock", "model": "digits_cnn",
          "text": "digits_cnn at concurrency 16: this project's TorchServe >= 3x the stock "
                  "BaseHandler route, p99 no worse",
          **stock_target(points, "digits_cnn", "torchserve", 16, 3.0)}, ["torchserve", STOCK_OF["torchserve"]]),
        ({"id": "sentiment_served_vs_in_process", "model": "sentiment_lstm",
          "text": "sentiment_lstm at concurrency 64: served throughput >= 0.8x in-process "
                  "throughput at the max batch size, on both runtimes",
          **limit_target(points, limits, "sentiment_lstm", 64, 0.8)}, OURS),
    ]
    for target, keys in targets:
        target["status"] = STATUS[target["met"]]
        target["limited_by"] = limiting_factor(points, in_proc_by_model.get(target["model"], []),
                                               target["model"], keys)
    return [target for target, _ in targets]
