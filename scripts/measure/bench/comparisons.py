"""Comparisons: each served point as ratios to the stock setup of its runtime (same protocol,
same concurrency) and to the in-process limit; the points are looked up by their coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

from scripts.measure.bench.setups import SETUP_BY_KEY, SETUPS, STOCK_OF

OURS = [
    s.key for s in SETUPS if not s.stock and not s.int8 and not s.gateway
]  # this project's setups, one per runtime
# each runtime's setup through the gateway -> the same deployment measured directly
DIRECT_OF = {s.key: s.runtime for s in SETUPS if s.gateway}


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
                "throughput_vs_stock": ratio(
                    p["throughput"], stock["throughput"] if stock else None
                ),
                "p99_vs_stock": ratio(p["p99_ms"], stock["p99_ms"] if stock else None),
                "throughput_vs_limit_batch1": ratio(
                    p["throughput"], (limit.get("batch1") or {}).get("throughput")
                ),
                "throughput_vs_limit_max_batch": ratio(
                    p["throughput"], (limit.get("max_batch") or {}).get("throughput")
                ),
            }
        )
    return out


def paired(points: list[dict], base_of: Callable[[dict], str | None]) -> list[tuple[dict, dict]]:
    """(point, the point it is compared with): the setup `base_of` names for it (None: not
    compared), same model, protocol and concurrency, both measured."""
    pairs = []
    for p in points:
        base_key = base_of(p)
        if base_key is None or "error" in p:
            continue
        base = find_point(points, p["model"], base_key, p["protocol"], p["concurrency"])
        if base is not None:
            pairs.append((p, base))
    return pairs


def stock_at_one_client(point: dict) -> str | None:
    setup = SETUP_BY_KEY[point["setup"]]
    return None if setup.stock or point["concurrency"] != 1 else STOCK_OF[setup.runtime]


def one_client(points: list[dict]) -> list[dict]:
    """Per model, setup of ours (int8 included) and protocol: throughput and p50 at concurrency 1
    against the stock setup of its runtime: what a service at low load, most of the time, sees."""
    return [
        {
            "model": p["model"],
            "setup": p["setup"],
            "protocol": p["protocol"],
            "throughput_vs_stock": ratio(p["throughput"], stock["throughput"]),
            "p50_ms": p["p50_ms"],
            "stock_p50_ms": stock["p50_ms"],
            "p50_added_ms": p["p50_ms"] - stock["p50_ms"],
        }
        for p, stock in paired(points, stock_at_one_client)
    ]


def gateway_overhead(points: list[dict]) -> list[dict]:
    """Per model, runtime and concurrency: this project's deployment through the gateway
    against the same deployment called directly (HTTP), measured in the same run: p50 added
    and throughput as a ratio."""
    return [
        {
            "model": p["model"],
            "runtime": direct["setup"],
            "concurrency": p["concurrency"],
            "throughput": p["throughput"],
            "direct_throughput": direct["throughput"],
            "throughput_vs_direct": ratio(p["throughput"], direct["throughput"]),
            "p50_ms": p["p50_ms"],
            "direct_p50_ms": direct["p50_ms"],
            "p50_added_ms": p["p50_ms"] - direct["p50_ms"],
        }
        for p, direct in paired(points, lambda p: DIRECT_OF.get(p["setup"]))
    ]
