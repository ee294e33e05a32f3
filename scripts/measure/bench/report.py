"""The bench report: the machine it ran on, bench.json (every figure and command), bench.md
(tables, ratios, targets) and the plots."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path

from scripts.measure.bench.plots import plot
from scripts.measure.bench.setups import BENCHED, SETUP_BY_KEY, SETUPS, bench_of
from scripts.measure.bench.comparisons import OURS, find_point

# the versions the report records: the model stack's, then each runtime's own
PACKAGES = [
    "torch",
    "onnxruntime",
    "onnx",
    "numpy",
    *(p for runtime in BENCHED for p in bench_of(runtime).packages),
    "matplotlib",
]


def cpu_model() -> str:
    try:
        return next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        return ""


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return None


def versions() -> dict[str, str | None]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "versions": versions(),
        "torch_threads_default": torch.get_num_threads(),
        # Other work on the box skews every figure: the 1/5/15-minute load when the report is
        # written.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """bench.json, the plots and bench.md (which links them) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plots = plot(report, out_dir)
    (out_dir / "bench.md").write_text(markdown(report, [p.name for p in plots]))
    return [out_dir / "bench.json", out_dir / "bench.md", *plots]


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def header(report: dict) -> list[str]:
    m, measurement = report["machine"], report["measurement"]
    lines = [
        "# Benchmark",
        "",
        f"{report['created']} on {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, "
        f"Python {m['python']}. "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ".",
        "",
        f"Every figure comes from this one run "
        f"(`{report['invocation']}`, {report['timings']['total_s']:.0f} s). "
        f"perf_analyzer: stability {measurement['stability']}%, at most "
        f"{measurement['max_trials']} windows of {measurement['interval_ms']} ms per point; "
        "the exact command of every point is in bench.json. Ratios: throughput and p99 against "
        "the stock setup of the same runtime (same protocol and concurrency), throughput against "
        "the in-process limit (best of eager PyTorch and onnxruntime at that batch size).",
        "",
        "Setups:",
        "",
    ]
    lines += [f"- `{s.key}`: {s.label}" for s in SETUPS]
    lines += [
        "",
        "## Targets",
        "",
        "| target | status | figures | limited by |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {t['text']} | **{t['status']}** | {t['detail']} | {t['limited_by']} |"
        for t in report["targets"]
    ]
    return (
        lines
        + one_client_section(report.get("one_client", []))
        + gateway_section(report.get("gateway", []))
    )


def one_client_section(rows: list[dict]) -> list[str]:
    """Ours against stock at concurrency 1, every setup and protocol in one table."""
    if not rows:
        return []
    return [
        "",
        "## One client (concurrency 1)",
        "",
        "| model | setup | protocol | x stock | p50 ours vs stock (ms) | p50 added (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['model']} | {r['setup']} | {r['protocol']} | "
            f"{fmt_ratio(r['throughput_vs_stock'])} | "
            f"{r['p50_ms']:.3f} vs {r['stock_p50_ms']:.3f} | {r['p50_added_ms']:+.3f} |"
            for r in rows
        ),
    ]


def gateway_section(rows: list[dict]) -> list[str]:
    """This project's deployment through the gateway against direct, at every concurrency."""
    if not rows:
        return []
    return [
        "",
        "## Through the gateway (HTTPS, a client key) against direct, same run",
        "",
        "| model | runtime | concurrency | throughput gateway vs direct | x direct | "
        "p50 gateway vs direct (ms) | p50 added (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['model']} | {r['runtime']} | {r['concurrency']} | "
            f"{r['throughput']:.0f} vs {r['direct_throughput']:.0f}/s | "
            f"{fmt_ratio(r['throughput_vs_direct'])} | "
            f"{r['p50_ms']:.3f} vs {r['direct_p50_ms']:.3f} | {r['p50_added_ms']:+.3f} |"
            for r in rows
        ),
    ]


def point_row(p: dict, comps: dict) -> str:
    """One served point's table row: figures and ratios, or why it failed."""
    if "error" in p:
        return (
            f"| {p['setup']} | {p['protocol']} | {p['concurrency']} | failed: "
            f"{p['error'].splitlines()[-1] if p['error'] else '?'} | | | | | | |"
        )
    c = comps[(p["model"], p["setup"], p["protocol"], p["concurrency"])]
    stock = SETUP_BY_KEY[p["setup"]].stock
    flag = " (unstable)" if p.get("unstable") else ""
    return (
        f"| {p['setup']} | {p['protocol']} | {p['concurrency']} | {p['throughput']:.1f}{flag} | "
        f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
        f"{'-' if stock else fmt_ratio(c['throughput_vs_stock'])} | "
        f"{'-' if stock else fmt_ratio(c['p99_vs_stock'])} | "
        f"{fmt_ratio(c['throughput_vs_limit_batch1'])} | "
        f"{fmt_ratio(c['throughput_vs_limit_max_batch'])} |"
    )


def model_section(report: dict, model: str, info: dict, comps: dict, plots: list[str]) -> list[str]:
    lines = [
        "",
        f"## {model}",
        "",
        f"Spec: max batch size {info['max_batch_size']}, "
        f"queue delay {info['max_queue_delay_ms']} ms, "
        f"TorchServe workers {info['workers']}, Triton instances {info['instances']}, "
        f"threads {info.get('threads', 1)}; served formats: "
        + ", ".join(f"{r} {f}" for r, f in info.get("served_formats", {}).items())
        + "".join(
            f"; {r} settings: " + ", ".join(f"{k} {v}" for k, v in s.items())
            for r, s in info.get("per_runtime", {}).items()
        )
        + ".",
        "",
        "| setup | protocol | concurrency | infer/s | p50 ms | p99 ms | x stock | p99 x stock | "
        "x limit (batch 1) | x limit (max batch) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [point_row(p, comps) for p in report["points"] if p["model"] == model]
    lines += [
        "",
        "In-process (per call; batch rows per call):",
        "",
        "| format | threads | batch | infer/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['format']} | {r['threads']} | {r['batch']} | {r['throughput']:.1f} | "
        f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} |"
        for r in report["in_process"].get(model, [])
    ]
    for name in plots:
        if name.startswith(f"bench_{model}_"):
            lines += ["", f"![{name}]({name})"]
    return lines


def served_int8_cells(report: dict, model: str, runtime: str) -> str:
    """int8 against fp32 served throughput, per concurrency, over HTTP."""
    cells = []
    for level in sorted({p["concurrency"] for p in report["points"] if p["model"] == model}):
        fp32 = find_point(report["points"], model, runtime, "http", level)
        int8 = find_point(report["points"], model, f"{runtime}_int8", "http", level)
        if fp32 and int8:
            cells.append(
                f"c={level}: {int8['throughput']:.0f} vs {fp32['throughput']:.0f}/s "
                f"({int8['throughput'] / fp32['throughput']:.2f}x)"
            )
    return ", ".join(cells) or "not measured"


def int8_section(report: dict) -> list[str]:
    """Per model with a gated int8 export: its accuracy, size, and speed in-process and served."""
    int8 = report.get("int8") or {}
    if not int8:
        return []
    lines = [
        "",
        "## int8 (onnx_int8)",
        "",
        (
            "| model | method | metric | fp32 | int8 | drop | size vs fp32 | "
            "in-process int8/fp32 by batch |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, f in int8.items():
        gate = f.get("gate", {})
        ratios = ", ".join(
            f"batch {r['batch']}: {r['ratio']:.2f}x" for r in f.get("in_process", [])
        )
        size = f"{f['bytes'] / f['fp32_bytes']:.0%}" if f.get("fp32_bytes") else "-"
        lines.append(
            f"| {model} | {f.get('method', '-')} | {gate.get('metric', '-')} | "
            f"{gate.get('fp32', 0):.4f} | "
            f"{gate.get('int8', 0):.4f} | {gate.get('drop', 0):.2f} | {size} | {ratios or '-'} |"
        )
    if not any(p["setup"].endswith("_int8") for p in report["points"]):
        return lines
    lines += [
        "",
        "Served int8 against the deployment as built (its format in brackets; HTTP):",
        "",
        "| model | runtime (format served) | int8 vs that format |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {model} | {runtime} "
        f"({report['models'][model].get('served_formats', {}).get(runtime, '?')}) | "
        f"{served_int8_cells(report, model, runtime)} |"
        for model in int8
        for runtime in OURS
    ]
    return lines


def markdown(report: dict, plots: list[str]) -> str:
    comps = {
        (c["model"], c["setup"], c["protocol"], c["concurrency"]): c for c in report["comparisons"]
    }
    lines = header(report)
    for model, info in report["models"].items():
        lines += model_section(report, model, info, comps, plots)
    lines += int8_section(report)
    lines += ["", "Reproduce: `make bench` (or `.venv/bin/python -m scripts bench --help`).", ""]
    return "\n".join(lines)
