"""The tuner's selection rule, on measurements alone (no servers, no timing: unit-tested on
recorded figures).

A configuration is the spec's serving settings; a curve is one runtime's measurements of it
at each concurrency: {concurrency: {"throughput", "p50_ms", "p99_ms"}}. The rule, per runtime
the configuration is measured on, over the concurrencies of the load it is tuned for (LOADS):
- throughput never below the stock setup's at any of them;
- p50 at concurrency 1, where 1 is one of them, no more than P50_SLACK_MS above the stock
  setup's;
and among the configurations that keep it, the highest throughput at the load's top
concurrency (as a ratio to stock: the lower of the runtimes' ratios); when none keeps it, the
one whose lowest throughput ratio to stock is highest. Each pick is on the latency-throughput
Pareto front (p50 at concurrency 1 against throughput at the top concurrency).
"""

from __future__ import annotations

import math

CONCURRENCY = (1, 4, 16, 64)  # every curve is measured at these
# The load a service is tuned for: the concurrencies the rule holds a configuration to. A
# service answering a few clients at a time ("low") may drop the dynamic batcher that a busy
# one ("high") needs (docs/performance.md); "any" holds both.
LOADS = {"any": CONCURRENCY, "low": (1, 4), "high": (16, 64)}
P50_SLACK_MS = 0.05  # what one client may notice: issue 36's bar (it was 0.3 ms)
NEAR_STEP = 0.05  # ratios to stock closer than this are the same distance from the rule


def rule_text(levels: tuple[int, ...] = CONCURRENCY) -> str:
    p50 = f" and p50 at concurrency 1 <= stock's + {P50_SLACK_MS} ms" if 1 in levels else ""
    return (
        f"throughput >= the stock setup's at concurrency {', '.join(map(str, levels))}{p50}, "
        f"on every runtime; among those, the highest throughput at concurrency {levels[-1]} "
        "(the lower of the runtimes' ratios to stock)"
    )


RULE = rule_text()

Curve = dict[int, dict]


def curve_problems(curve: Curve, stock: Curve, levels: tuple[int, ...] = CONCURRENCY) -> list[str]:
    """Why one runtime's curve breaks the rule; [] when it keeps it."""
    problems = []
    for level in levels:
        ours, ref = curve.get(level), stock.get(level)
        if ours is None or "throughput" not in ours:
            problems.append(f"concurrency {level}: not measured")
        elif ref is None or "throughput" not in ref:
            problems.append(
                f"concurrency {level}: stock setup not measured, nothing to compare with"
            )
        elif ours["throughput"] < ref["throughput"]:
            problems.append(
                f"concurrency {level}: {ours['throughput']:.0f}/s "
                f"below stock's {ref['throughput']:.0f}/s"
            )
    ours, ref = curve.get(1), stock.get(1)
    if (
        1 in levels
        and ours
        and ref
        and "p50_ms" in ours
        and "p50_ms" in ref
        and ours["p50_ms"] > ref["p50_ms"] + P50_SLACK_MS
    ):
        problems.append(
            f"p50 at concurrency 1: {ours['p50_ms']:.2f} ms > stock's {ref['p50_ms']:.2f} + "
            f"{P50_SLACK_MS} ms"
        )
    return problems


def ratio_at_top(curve: Curve, stock: Curve, levels: tuple[int, ...] = CONCURRENCY) -> float | None:
    top = levels[-1]
    ours, ref = curve.get(top) or {}, stock.get(top) or {}
    if not ours.get("throughput") or not ref.get("throughput"):
        return None
    return ours["throughput"] / ref["throughput"]


def worst_ratio(curve: Curve, stock: Curve, levels: tuple[int, ...] = CONCURRENCY) -> float:
    """The lowest of ours / stock throughput over the concurrencies (0 where ours is missing):
    how far a configuration is from never being below stock."""
    ratios = []
    for level in levels:
        ours, ref = curve.get(level) or {}, stock.get(level) or {}
        ratios.append(
            ours["throughput"] / ref["throughput"]
            if "throughput" in ours and ref.get("throughput")
            else (0.0 if "throughput" not in ours else 1.0)
        )
    return min(ratios)


def p50_excess(curve: Curve, stock: Curve) -> float | None:
    ours, ref = curve.get(1) or {}, stock.get(1) or {}
    return ours["p50_ms"] - ref["p50_ms"] if "p50_ms" in ours and "p50_ms" in ref else None


def assess(
    curves: dict[str, Curve], stock: dict[str, Curve], levels: tuple[int, ...] = CONCURRENCY
) -> dict:
    """One configuration over its runtimes: the problems (runtime-prefixed), whether it keeps
    the rule, its worst ratio to stock at the top concurrency and its worst p50 excess at 1."""
    problems = [
        f"{runtime}: {p}"
        for runtime, curve in curves.items()
        for p in curve_problems(curve, stock.get(runtime, {}), levels)
    ]
    ratios = [
        ratio_at_top(curve, stock.get(runtime, {}), levels) for runtime, curve in curves.items()
    ]
    excess = [p50_excess(curve, stock.get(runtime, {})) for runtime, curve in curves.items()]
    measured = any("throughput" in p for curve in curves.values() for p in curve.values())
    worst = min(
        (worst_ratio(curve, stock.get(runtime, {}), levels) for runtime, curve in curves.items()),
        default=0.0,
    )
    return {
        "problems": problems,
        "keeps_rule": not problems,
        "measured": measured,
        "worst_ratio": worst,
        "ratio_at_top": None
        if None in ratios or not ratios
        else min(r for r in ratios if r is not None),
        "p50_excess_ms": None
        if None in excess or not excess
        else max(e for e in excess if e is not None),
    }


def rank(assessment: dict) -> tuple:
    """Higher is better: keeps the rule; else nearest to it (the highest of the lowest
    throughput ratios to stock, capped at 1, in steps of NEAR_STEP so that run-to-run noise
    does not decide: 0.49x at one client beats 0.16x, 0.573x ties 0.570x); then fewer problems;
    then throughput at the top."""
    nearness = math.floor(
        min(assessment.get("worst_ratio", 0.0), 1.0) / NEAR_STEP
    )  # noise-sized steps
    return (
        assessment["keeps_rule"],
        nearness,
        -len(assessment["problems"]),
        assessment["ratio_at_top"] or 0.0,
    )


def pareto_front(assessed: dict[str, dict]) -> list[str]:
    """Ids not dominated in (p50 excess at concurrency 1: lower, ratio at the top: higher)."""
    points = {
        k: (a["p50_excess_ms"], a["ratio_at_top"])
        for k, a in assessed.items()
        if a["p50_excess_ms"] is not None and a["ratio_at_top"] is not None
    }

    def dominated(k: str) -> bool:
        x, y = points[k]
        return any(
            ox <= x and oy >= y and (ox, oy) != (x, y) for o, (ox, oy) in points.items() if o != k
        )

    return sorted((k for k in points if not dominated(k)), key=lambda k: points[k])


def choose(assessed: dict[str, dict]) -> str | None:
    """The id the rule picks; when none keeps the rule, the one closest to it (see rank),
    which the report marks as breaking it; None when
    no configuration has a single measured point."""
    measured = [k for k, a in assessed.items() if a.get("measured", True)]
    if not measured:
        return None
    return max(measured, key=lambda k: rank(assessed[k]))
