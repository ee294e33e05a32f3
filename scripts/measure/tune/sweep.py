"""Measuring one runtime's configurations on real servers: the stock setup and the spec's own
settings side by side (the runtime's bench deployment), then each configuration as a model of
its own, a few per server, perf_analyzer over HTTP at every concurrency of the rule.

Configurations the runtime cannot tell apart (same runtime key: Triton runs ONNX for every
fp32 format) are measured once.
"""

from __future__ import annotations

import time
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.measure.bench.points import perf_point
from scripts.measure.bench.setups import bench_of
from scripts.measure.tune.configs import runtime_key, spec_for
from scripts.measure.tune.rule import CONCURRENCY
from scripts.measure.variants import link_artifacts, serve_variants
from scripts.spec import ModelSpec, UserError

# Short windows: a curve is 4 points, a sweep tens of curves, on 2 cores.
MEASUREMENT = {"stability": 50, "max_trials": 3, "interval_ms": 1000}
GROUP = 4  # configurations per server start: idle models cost memory, not CPU


def curve(target, workdir: Path, levels=CONCURRENCY) -> dict[int, dict]:
    """{concurrency: figures or error} for one load target."""
    points = {}
    for level in levels:
        p = perf_point(target, level, workdir, MEASUREMENT)
        points[level] = (
            {k: p[k] for k in ("throughput", "p50_ms", "p99_ms", "unstable") if k in p}
            if "error" not in p
            else {"error": p["error"].splitlines()[-1] if p["error"] else "?"}
        )
    return points


def describe(label: str, runtime: str, points: dict[int, dict]) -> str:
    cells = [
        f"c={c}: "
        + (f"{p['throughput']:.0f}/s p50 {p['p50_ms']:.2f}" if "throughput" in p else "FAILED")
        for c, p in points.items()
    ]
    return f"{label:<10} {runtime:<10} " + " | ".join(cells)


def stock_and_spec(
    runtime, spec: ModelSpec, layout: Layout, workdir: Path, log
) -> tuple[dict, dict]:
    """(stock curve, the spec's own settings' curve) from the runtime's bench deployment."""
    found = {}
    bench = bench_of(runtime)
    with bench.deployment([spec], layout, workdir / runtime.name / "bench", log) as deployed:
        for _, setup, protocol, target in deployed.targets:
            if protocol == "http":
                found[setup] = curve(target, workdir / "perf")
    stock_key = next(k for k in found if k.endswith("_stock"))
    log(describe("stock", runtime.name, found[stock_key]))
    log(describe("spec", runtime.name, found[runtime.name]))
    return found[stock_key], found[runtime.name]


def measure_group(
    runtime,
    pairs: list[tuple[ModelSpec, ModelSpec]],
    scratch: Layout,
    layout: Layout,
    workdir: Path,
    log,
) -> dict[str, dict]:
    """{variant name: curve} for variants served together by one server of this runtime."""
    try:
        with serve_variants(runtime, pairs, layout, scratch, workdir) as targets:
            return {
                name: curve(target, workdir / "perf")
                if not isinstance(target, str)
                else {c: {"error": target} for c in CONCURRENCY}
                for name, target in targets.items()
            }
    except UserError as error:  # a configuration the runtime refuses is a result, not the end
        message = str(error).splitlines()[0][:300]
        log(f"{runtime.name}: could not serve {', '.join(v.name for _, v in pairs)}: {message}")
        return {v.name: {c: {"error": message} for c in CONCURRENCY} for _, v in pairs}


class Sweep:
    """One runtime's figures so far: the stock curve, a curve per runtime key, the
    configurations measured (id -> settings and curve), and the budget left."""

    def __init__(
        self,
        runtime,
        spec: ModelSpec,
        layout: Layout,
        scratch: Layout,
        workdir: Path,
        deadline: float,
        log,
    ):
        self.runtime, self.spec, self.layout = runtime, spec, layout
        self.scratch, self.workdir = scratch, workdir
        self.deadline, self.log = deadline, log
        self.stock: dict = {}
        self.by_key: dict[str, dict] = {}
        self.configs: dict[str, dict] = {}
        self.left_out: list[dict] = []

    def start(self, base: dict) -> None:
        """The stock setup and the spec's own settings (configuration t00)."""
        self.stock, spec_curve = stock_and_spec(
            self.runtime, self.spec, self.layout, self.workdir, self.log
        )
        variant = self.variant("t00", base)
        self.by_key[runtime_key(self.runtime, variant, self.scratch)] = spec_curve
        self.configs["t00"] = {"settings": base, "curve": spec_curve}

    def variant(self, config_id: str, settings: dict) -> ModelSpec:
        variant = spec_for(self.spec, settings, f"{self.spec.name}_{self.runtime.name}_{config_id}")
        link_artifacts(self.spec, variant, self.layout, self.scratch)
        return variant

    def measure(self, settings_list: list[dict]) -> None:
        """Measure the configurations not seen yet, in groups, until the deadline."""
        fresh = []
        for settings in settings_list:
            if (
                settings not in (c["settings"] for c in self.configs.values())
                and settings not in fresh
            ):
                fresh.append(settings)
        todo, named = [], []
        for settings in fresh:
            config_id = f"t{len(self.configs) + len(named):02d}"
            variant = self.variant(config_id, settings)
            key = runtime_key(self.runtime, variant, self.scratch)
            named.append((config_id, settings, key))
            if key not in self.by_key and key not in (k for k, _ in todo):
                todo.append((key, variant))
        for i in range(0, len(todo), GROUP):
            if time.monotonic() > self.deadline:
                self.log(
                    f"{self.runtime.name}: budget spent, {len(todo) - i} configuration(s) left out"
                )
                break
            group = todo[i : i + GROUP]
            found = measure_group(
                self.runtime,
                [(self.spec, v) for _, v in group],
                self.scratch,
                self.layout,
                self.workdir,
                self.log,
            )
            for key, variant in group:
                self.by_key[key] = found[variant.name]
                self.log(
                    describe(
                        variant.name.rsplit("_", 1)[-1], self.runtime.name, found[variant.name]
                    )
                )
        for config_id, settings, key in named:
            if key in self.by_key:
                self.configs[config_id] = {"settings": settings, "curve": self.by_key[key]}
            elif settings not in self.left_out:
                self.left_out.append(settings)
