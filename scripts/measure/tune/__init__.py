"""Step `tune`: sweep one model's serving settings on each runtime, judge every configuration
against that runtime's stock setup with the latency-aware rule (rule.py), and write the choices
as spec fields with the figures behind them.

Per runtime, the sweep starts from the settings the spec serves it with and varies one axis at
a time (queue delay, max batch size, Triton instances or TorchServe workers, threads, format),
then measures the combination of each axis's best value; a second pass does the same from the
best configuration so far (settings interact: no queue delay wants one instance). The runtimes
are tuned separately: they batch differently, and a setting only one of them wants goes under
`per_runtime:`.
Writes reports/tune_<model>.json (every curve, the stock curves, each verdict, the Pareto
fronts, the choices), tune_<model>.yaml (the spec fields) and tune_<model>.png (the fronts).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from scripts.measure.tune.plot import plot_fronts
from scripts.pipeline.layout import Layout
from scripts.measure.tune.configs import axes_for, one_axis_at_a_time, settings_of, spec_fields
from scripts.measure.tune.rule import (
    CONCURRENCY,
    LOADS,
    assess,
    choose,
    pareto_front,
    rank,
    rule_text,
)
from scripts.measure.tune.sweep import MEASUREMENT, Sweep
from scripts.measure.variants import scratch_layout
from scripts.spec import ModelSpec

PASSES = 2


def best_per_axis(
    configs: dict[str, dict], verdicts: dict[str, dict], base: dict, axes: dict[str, list]
) -> dict:
    """Each axis at the value whose one-axis configuration ranks best (the base's otherwise)."""
    combined = dict(base)
    for axis in axes:
        candidates = [
            i
            for i, c in configs.items()
            if all(c["settings"][k] == base[k] for k in base if k != axis)
        ]
        best = max(candidates, key=lambda i: rank(verdicts[i]))
        combined[axis] = configs[best]["settings"][axis]
    return combined


def tune_runtime(
    runtime,
    spec: ModelSpec,
    layout: Layout,
    scratch: Layout,
    workdir: Path,
    deadline: float,
    log,
    load: str = "any",
) -> dict:
    """One runtime's sweep, verdicts, front and choice: PASSES rounds of coordinate descent,
    each from the best configuration so far (the spec's own settings first)."""
    sweep = Sweep(runtime, spec, layout, scratch, workdir, deadline, log)
    base, axes = settings_of(spec.for_runtime(runtime.name)), axes_for(spec, layout, runtime)
    sweep.start(base)

    def verdicts() -> dict[str, dict]:
        return {
            i: assess({runtime.name: c["curve"]}, {runtime.name: sweep.stock}, LOADS[load])
            for i, c in sweep.configs.items()
        }

    for _ in range(PASSES):
        sweep.measure(one_axis_at_a_time(base, axes))
        sweep.measure([best_per_axis(sweep.configs, verdicts(), base, axes)])
        chosen = choose(verdicts())
        if chosen is None:  # nothing could be measured: no pass from nowhere
            log(f"{runtime.name}: no configuration could be measured; see the errors in the report")
            break
        best = sweep.configs[chosen]["settings"]
        if best == base:
            break
        base = best
    judged = verdicts()
    chosen = choose(judged)
    return {
        "stock": sweep.stock,
        "axes": axes,
        "configs": {i: {**c, "verdict": judged[i]} for i, c in sweep.configs.items()},
        "left_out": sweep.left_out,
        "front": pareto_front(judged),
        "choice": chosen
        and {
            "id": chosen,
            "settings": sweep.configs[chosen]["settings"],
            "keeps_rule": judged[chosen]["keeps_rule"],
            "verdict": judged[chosen],
        },
    }


def run_tune(
    spec: ModelSpec,
    layout: Layout,
    runtimes: list,
    budget_s: float = 900,
    out_dir: Path | None = None,
    log=print,
    load: str = "any",
) -> dict:
    started = time.monotonic()
    workdir = layout.state("tune") / spec.name
    shutil.rmtree(workdir, ignore_errors=True)
    scratch = scratch_layout(layout, workdir / "checkout")
    results = {}
    for i, runtime in enumerate(runtimes):  # each runtime gets its share of what is left
        deadline = time.monotonic() + (budget_s - (time.monotonic() - started)) / (
            len(runtimes) - i
        )
        results[runtime.name] = tune_runtime(
            runtime, spec, layout, scratch, workdir, deadline, log, load
        )
    choices = {r: res["choice"]["settings"] for r, res in results.items() if res["choice"]}
    report = {
        "model": spec.name,
        "load": load,
        "rule": rule_text(LOADS[load]),
        "concurrency": list(CONCURRENCY),
        "judged_at": list(LOADS[load]),
        "measurement": MEASUREMENT,
        "budget_s": budget_s,
        "runtimes": results,
        "spec_fields": spec_fields(spec, choices) if choices else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_report(report, out_dir or layout.reports)
    return report


def figures_line(runtime: str, result: dict) -> str:
    choice = result["choice"]
    curve, stock = result["configs"][choice["id"]]["curve"], result["stock"]
    cells = [
        f"c={c} {p['throughput']:.0f}/s (stock {stock[c]['throughput']:.0f})"
        for c, p in curve.items()
        if "throughput" in p and "throughput" in stock.get(c, {})
    ]
    low = curve.get(1, {})
    p50 = (
        f", p50 at c=1 {low['p50_ms']:.2f} ms (stock {stock[1]['p50_ms']:.2f})"
        if "p50_ms" in low and "p50_ms" in stock.get(1, {})
        else ""
    )
    verdict = (
        "keeps the rule"
        if choice["keeps_rule"]
        else "breaks the rule: " + "; ".join(choice["verdict"]["problems"])
    )
    return f"#   {runtime} ({choice['id']}, {verdict}): " + ", ".join(cells) + p50


def snippet(report: dict) -> str:
    """The choices as a models.yaml entry, with the figures behind them as comments."""
    import yaml

    load = report.get("load", "any")
    command = f"make tune MODEL={report['model']}" + (f" LOAD={load}" if load != "any" else "")
    lines = [f"# {command}: per runtime, {report['rule']}"]
    lines += [figures_line(r, res) for r, res in report["runtimes"].items() if res["choice"]]
    body = yaml.safe_dump(
        {"name": report["model"], **report["spec_fields"]}, sort_keys=False, default_flow_style=None
    )
    return "\n".join(lines) + "\n" + body


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = report["model"]
    (out_dir / f"tune_{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    if report["spec_fields"]:
        (out_dir / f"tune_{name}.yaml").write_text(snippet(report))
    plot_fronts(report, out_dir / f"tune_{name}.png")
