"""Step `tune`: sweep a small grid (max batch size x queue delay x instances x format) of one
model's Triton deployment within a time budget, and suggest the best as spec fields.

Each grid point is the tensor model exactly as `build_repository` writes it for a copy of the
spec entry with those settings (renamed `<name>__<variant>`), loaded into one tritonserver on
free loopback ports through the restricted repository API, measured with perf_analyzer at
one concurrency, and unloaded again. The spec's current settings are measured first, as the
baseline. Writes reports/tune_<name>.json and returns the suggestion (a YAML snippet).
"""
from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import yaml

from scripts.build.paths import exported_formats
from scripts.spec import Batching, ModelSpec
from scripts.spec.errors import BuildError

BATCH_SIZES = [8, 32]
QUEUE_DELAYS_MS = [0.5, 2.0, 5.0]
INSTANCES = [1, 2]
FORMATS = ["onnx", "torchscript"]          # what the Triton Python backend runs here
MEASUREMENT = {"stability": 50, "max_trials": 3, "interval_ms": 1000}
P99_SLACK = 1.25   # a faster variant wins only if its p99 stays within 1.25x the baseline's


def variant_name(spec: ModelSpec, mbs: int, delay_ms: float, instances: int, fmt: str) -> str:
    delay = f"{delay_ms:g}".replace(".", "p")
    return f"{spec.name}__b{mbs}_d{delay}_i{instances}_{fmt}"


def grid(spec: ModelSpec, root: Path, batch_sizes=BATCH_SIZES, delays=QUEUE_DELAYS_MS, instances=INSTANCES,
         formats=FORMATS) -> list[dict]:
    """The spec's own settings first (baseline), then the grid; formats limited to the exported ones."""
    from scripts.runtimes.triton.repository import python_format

    formats = [f for f in formats if f in exported_formats(spec, root)]
    if not formats:
        raise BuildError(f"{spec.name}: none of {FORMATS} is exported; add one to export.formats")
    base = {"max_batch_size": spec.batching.max_batch_size, "max_queue_delay_ms": spec.batching.max_queue_delay_ms,
            "instances": spec.serving.instances, "format": python_format(spec, root, None), "baseline": True}
    points = [base]
    for mbs, delay, count, fmt in itertools.product(batch_sizes, delays, instances, formats):
        point = {"max_batch_size": mbs, "max_queue_delay_ms": delay, "instances": count, "format": fmt,
                 "baseline": False}
        if any(all(point[k] == p[k] for k in ("max_batch_size", "max_queue_delay_ms", "instances", "format"))
               for p in points):
            continue
        points.append(point)
    return points


def variant_spec(spec: ModelSpec, point: dict) -> ModelSpec:
    batching = Batching(max_batch_size=point["max_batch_size"], max_queue_delay_ms=point["max_queue_delay_ms"],
                        preferred_batch_sizes=[b for b in spec.batching.preferred_batch_sizes
                                               if b <= point["max_batch_size"]])
    serving = spec.serving.model_copy(update={"instances": point["instances"]})
    return spec.model_copy(update={"batching": batching, "serving": serving})


def write_variant(spec: ModelSpec, point: dict, root: Path, repo: Path, scratch: Path) -> str:
    """The tensor model for these settings, built by build_repository, renamed into `repo`."""
    from scripts.runtimes.triton.configs import read_config, write_config
    from scripts.runtimes.triton.repository import build_repository

    name = variant_name(spec, point["max_batch_size"], point["max_queue_delay_ms"], point["instances"],
                        point["format"])
    shutil.rmtree(scratch, ignore_errors=True)
    build_repository([variant_spec(spec, point)], root, scratch, "python", True, point["format"])
    target = repo / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(scratch / spec.name), target)
    config = read_config(target / "config.pbtxt")
    config.name = name
    write_config(config, target)
    return name


def repository_call(server, model: str, action: str) -> None:
    import requests

    from scripts.runtimes.triton.server import ADMIN_HEADER

    reply = requests.post(f"http://{server.http_url}/v2/repository/models/{model}/{action}",
                          headers={ADMIN_HEADER: server.admin_key}, timeout=300)
    if reply.status_code != 200:
        raise BuildError(f"tritonserver: {action} {model} failed ({reply.status_code}): {reply.text[:300]}")


def best_of(results: list[dict]) -> dict | None:
    """Highest throughput whose p99 stays within P99_SLACK of the baseline's; else the baseline."""
    measured = [r for r in results if "throughput" in r]
    if not measured:
        return None
    baseline = next((r for r in measured if r["baseline"]), measured[0])
    allowed = [r for r in measured if r["p99_ms"] <= baseline["p99_ms"] * P99_SLACK]
    return max(allowed or [baseline], key=lambda r: r["throughput"])


def suggestion(spec: ModelSpec, best: dict, concurrency: int) -> str:
    entry = {"batching": {"max_batch_size": best["max_batch_size"], "max_queue_delay_ms": best["max_queue_delay_ms"]},
             "serving": {"instances": best["instances"]}}
    head = (f"# make tune: {best['throughput']:.0f} infer/s, p99 {best['p99_ms']:.1f} ms at concurrency "
            f"{concurrency} (Triton, Python backend running {best['format']}); see reports/tune_{spec.name}.json\n")
    return head + yaml.safe_dump({spec.name: entry}, sort_keys=False, default_flow_style=None)


def measure(server, name: str, point: dict, concurrency: int, data: Path, workdir: Path) -> dict:
    """Measure one loaded grid point, then unload it: one variant in memory at a time."""
    from scripts.measure.bench.points import perf_point
    from scripts.runtimes.base import LoadTarget

    measured = perf_point(LoadTarget(name, server.http_url, "http", "triton", data), concurrency, workdir,
                          MEASUREMENT)
    repository_call(server, name, "unload")
    return {**point, "model": name, **{k: v for k, v in measured.items() if k != "concurrency"}}


def describe(r: dict) -> str:
    return f"{r['model']:<45} " + (f"{r['throughput']:8.1f}/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
                                   if "throughput" in r else f"FAILED {r.get('error', '')[-120:]}")


def sweep(spec: ModelSpec, root: Path, points: list[dict], workdir: Path, concurrency: int, budget_s: float,
          started: float, log) -> list[dict]:
    """The baseline loaded at start-up, then each grid point loaded, measured and unloaded in
    turn through the repository API, until the budget is spent."""
    from scripts.build.paths import golden
    from scripts.runtimes.processes import free_port
    from scripts.runtimes.triton import server as triton_server
    from scripts.runtimes.triton.stock import write_input_data

    repo = workdir / "repo"
    repo.mkdir(parents=True)
    data = write_input_data(golden(spec, root), workdir / "data" / f"{spec.name}.input.json")
    first = write_variant(spec, points[0], root, repo, workdir / "scratch")
    ports = triton_server.Ports(free_port(), free_port(), free_port())
    server = triton_server.start(repo, [first], ports, workdir / "triton")
    results = []
    try:
        triton_server.wait_ready(server, [first], 300)
        for i, point in enumerate(points):
            if i and time.monotonic() - started > budget_s:
                log(f"budget of {budget_s:.0f}s spent: {len(points) - i} grid point(s) not measured")
                break
            name = first if i == 0 else write_variant(spec, point, root, repo, workdir / "scratch")
            if i:
                repository_call(server, name, "load")
            results.append(measure(server, name, point, concurrency, data, workdir / "perf"))
            log(describe(results[-1]))
    finally:
        triton_server.stop(server.workdir)
    return results


def run_tune(spec: ModelSpec, root: Path, budget_s: float = 180, concurrency: int = 16,
             out_dir: Path | None = None, log=print) -> dict:
    from scripts.measure.bench.setups import BENCH_DIR

    started = time.monotonic()
    workdir = (root / BENCH_DIR / f"tune_{spec.name}").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    results = sweep(spec, root, grid(spec, root), workdir, concurrency, budget_s, started, log)
    best = best_of(results)
    report = {"model": spec.name, "concurrency": concurrency, "budget_s": budget_s,
              "seconds": round(time.monotonic() - started, 1), "measurement": MEASUREMENT,
              "rule": f"highest throughput with p99 <= {P99_SLACK}x the baseline's (the spec's current settings)",
              "grid": {"max_batch_size": BATCH_SIZES, "max_queue_delay_ms": QUEUE_DELAYS_MS,
                       "instances": INSTANCES, "format": FORMATS},
              "results": results, "best": best,
              "suggestion": suggestion(spec, best, concurrency) if best else None}
    out_dir = out_dir or root / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"tune_{spec.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
