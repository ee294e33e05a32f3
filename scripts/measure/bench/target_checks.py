"""How each kind of performance target is checked against the measured points: ours against
the stock setup, served against the in-process limit, every load level, and int8 against fp32.
Each returns its checks, whether all were met (None: not measured) and the figures in words.
"""

from __future__ import annotations

from scripts.measure.bench.comparisons import OURS, find_point
from scripts.measure.bench.setups import SETUP_BY_KEY, STOCK_OF
from scripts.measure.tune.rule import P50_SLACK_MS


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
            f"{protocol}: {ours['throughput']:.0f}/s vs {stock['throughput']:.0f}/s = "
            f"{speedup:.2f}x "
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


def every_load_target(
    points, model: str, runtime: str, levels: list[int], slack_ms: float = P50_SLACK_MS
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


# what the gateway may cost (issue: access control): p50 added by one client, the share of the
# direct throughput kept at 64
GATEWAY_P50_ADDED_MS, GATEWAY_THROUGHPUT_KEPT = 0.2, 0.9


def gateway_target(overhead: list[dict], model: str, runtime: str) -> dict:
    """Through the gateway against direct, same run: p50 added at concurrency 1 and the
    throughput kept at 64."""
    rows = {r["concurrency"]: r for r in overhead if (r["model"], r["runtime"]) == (model, runtime)}
    checks, reasons = [], []
    for level, bound in ((1, GATEWAY_P50_ADDED_MS), (64, GATEWAY_THROUGHPUT_KEPT)):
        row = rows.get(level)
        if row is None:
            checks.append({"concurrency": level, "met": None})
            reasons.append(f"c={level}: not measured")
            continue
        if level == 1:
            met = row["p50_added_ms"] <= bound
            reasons.append(
                f"c=1: p50 {row['p50_ms']:.3f} vs {row['direct_p50_ms']:.3f} ms direct "
                f"({row['p50_added_ms']:+.3f} ms, needs <= +{bound} ms)"
            )
        else:
            met = row["throughput_vs_direct"] >= bound
            reasons.append(
                f"c=64: {row['throughput']:.0f} vs {row['direct_throughput']:.0f}/s direct "
                f"({row['throughput_vs_direct']:.2f}x, needs >= {bound}x)"
            )
        checks.append({"concurrency": level, "met": met, **row})
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons)}


def int8_target(int8: dict, model: str, factor: float = 1.5, max_drop_points: float = 1.0) -> dict:
    """int8 in-process >= factor x fp32 ONNX at the max batch, losing at most max_drop_points."""
    figures = int8.get(model) or {}
    rows = figures.get("in_process") or []
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
        "detail": f"batch {top['batch']}: {top['int8']:.0f}/s vs {top['fp32']:.0f}/s = "
        f"{top['ratio']:.2f}x "
        f"(needs {factor}x); {gate['metric']} {gate['fp32']:.4f} -> {gate['int8']:.4f} "
        f"(drop {gate['drop']:.2f} points){size}",
    }
