"""`make bench-generation`'s report: the JSON as measured, Markdown tables with the ratios to
each runtime's stock setup and to the in-process limit (the plain prompts, then the
prefix-shared and structured cases), and one PNG (tokens/s and TTFT p50
against concurrency, one line per setup, the limit dotted)."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.measure.bench.report import fmt_ratio, machine_info

MS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(report: dict) -> list[str]:
    limits = report["in_process_limit_tokens_per_s"]
    lines = [
        "| setup | streams | tokens/s | vs stock | vs limit | TTFT p50 / p99 ms "
        "| ITL p50 / p99 ms | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in report["concurrency"]:
        lines.append(f"| in-process limit, static batch {c} | {c} | {limits[c]:.0f} | | | | | |")
    for runtime, stock in report["stock_of"].items():
        compared = report["comparisons"][runtime]
        for setup in (stock, runtime):
            for p in report["setups"][setup]["points"]:
                c = p["concurrency"]
                mine = setup == runtime
                lines.append(
                    f"| {setup} | {c} | {p['tokens_per_s']:.0f} "
                    f"| {fmt_ratio(compared['vs_stock'][c]) if mine else ''} "
                    f"| {fmt_ratio(p['tokens_per_s'] / limits[c])} "
                    f"| {fmt_ms(p['ttft_p50_ms'])} / {fmt_ms(p['ttft_p99_ms'])} "
                    f"| {fmt_ms(p['itl_p50_ms'])} / {fmt_ms(p['itl_p99_ms'])} | {p['failed']} |"
                )
    return lines


def case_table(report: dict) -> list[str]:
    """The extra cases, each setup beside its stock one and its own plain figure."""
    lines = [
        "| case | setup | streams | tokens/s | tokens/request | vs stock | vs plain | vs limit "
        "| TTFT p50 / p99 ms | ITL p50 / p99 ms | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, about in report["cases"].items():
        limits = about["limit_tokens_per_s"] or {}
        for runtime, stock in report["stock_of"].items():
            theirs = report["setups"][stock]["cases"][case]
            for setup in (stock, runtime):
                plain = {p["concurrency"]: p for p in report["setups"][setup]["points"]}
                for i, p in enumerate(report["setups"][setup]["cases"][case]):
                    c = p["concurrency"]
                    vs_stock = p["tokens_per_s"] / theirs[i]["tokens_per_s"]
                    limit = limits.get(c) or limits.get(str(c))
                    lines.append(
                        f"| {case} | {setup} | {c} | {p['tokens_per_s']:.0f} "
                        f"| {p.get('tokens_per_request', 0):.1f} "
                        f"| {fmt_ratio(vs_stock) if setup == runtime else ''} "
                        f"| {fmt_ratio(p['tokens_per_s'] / plain[c]['tokens_per_s'])} "
                        f"| {fmt_ratio(p['tokens_per_s'] / limit) if limit else '-'} "
                        f"| {fmt_ms(p['ttft_p50_ms'])} / {fmt_ms(p['ttft_p99_ms'])} "
                        f"| {fmt_ms(p['itl_p50_ms'])} / {fmt_ms(p['itl_p99_ms'])} "
                        f"| {p['failed']} |"
                    )
    return lines


def targets(report: dict) -> list[str]:
    wanted = report["targets"]
    lines = []
    for runtime, compared in report["comparisons"].items():
        met = compared["met"]
        words = {
            "vs_stock_c16": f"tokens/s at 16 streams {fmt_ratio(compared['vs_stock'][16])} "
            f"of stock (target ≥ {wanted['vs_stock_c16']}x)",
            "ttft_vs_stock_c1": f"TTFT p50 at one stream {fmt_ratio(compared['ttft_vs_stock'][1])} "
            f"of stock (target ≤ {wanted['ttft_vs_stock_c1']}x)",
            "vs_limit_c16": f"tokens/s at 16 streams {fmt_ratio(compared['vs_limit'][16])} "
            f"of the in-process limit (target ≥ {wanted['vs_limit_c16']}x)",
        }
        for key, text in words.items():
            lines.append(f"- {runtime}: {text}: {'met' if met[key] else 'MISSED'}")
    return lines


def markdown(report: dict, plot: str) -> str:
    ready = ", ".join(
        f"{setup} {report['setups'][setup]['ready_s']:.1f} s" for setup in report["stock_of"]
    )
    lines = [
        f"# bench-generation: {report['model']}",
        "",
        f"Greedy, {report['max_tokens']} new tokens per request on the golden prompts, "
        f"{report['threads']} torch thread(s) for this project's deployment and the limit; "
        "stock setups as TorchServe / Triton start them by default. "
        f"Requests per stream: {report['requests_per_stream']}. "
        f"Time to READY (both setups in one server): {ready}.",
        "",
        *table(report),
        "",
        *targets(report),
        "",
        "Cases beside the plain one, each setup given the same requests: prompts sharing a "
        f"{report['cases']['prefix-shared']['shared_prefix_tokens']}-token prefix, and "
        "structured output (`guided_json`; the stock setup ignores it and answers "
        "unconstrained). vs plain: the same setup and streams on the plain prompts (tokens/s "
        "depends on how many tokens the answers have: see tokens/request).",
        "",
        *case_table(report),
        "",
        f"![tokens/s and TTFT]({plot})",
        "",
    ]
    return "\n".join(lines)


def draw(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, ttft) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (setup, measured) in enumerate(report["setups"].items()):
        points = measured["points"]
        dash = "--" if setup in report["stock_of"].values() else "-"
        x = [p["concurrency"] for p in points]
        rate.plot(x, [p["tokens_per_s"] for p in points], f"C{i}{dash}", marker="o", label=setup)
        ttft.plot(x, [p["ttft_p50_ms"] for p in points], f"C{i}{dash}", marker="o", label=setup)
    limits = report["in_process_limit_tokens_per_s"]
    rate.plot(list(limits), list(limits.values()), "k:", label="in-process static batch")
    for ax, label in ((rate, "output tokens/s"), (ttft, "TTFT p50 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    rate.legend(fontsize=8)
    fig.suptitle(f"{report['model']}: streamed generation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["machine"] = machine_info()
    plot = draw(report, report_path_in(out_dir, report["model"], "png"))
    md = report_path_in(out_dir, report["model"], "md")
    md.write_text(markdown(report, plot.name))
    data = report_path_in(out_dir, report["model"], "json")
    data.write_text(json.dumps(report, indent=2) + "\n")
    return [data, md, plot]


def report_path_in(out_dir: Path, model: str, suffix: str) -> Path:
    return out_dir / f"bench_generation_{model}.{suffix}"
