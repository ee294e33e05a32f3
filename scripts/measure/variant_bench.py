"""`make bench-generation MODEL=<model> VERSIONS=1,3`: a generation model's versions side by
side, each an optimised variant (int8, distilled, pruned) measured against the first version
listed (its fp32 original) in one run, on the same machine:

- in process: static batched `generate()` on the version's served folder in its served format,
  at 1 and 16 sequences (the limit its decode can reach; a version with a draft: transformers'
  assisted generation with it at 1 sequence);
- served: this project's deployment of the version on each runtime, 1 and 16 streams of the
  golden prompts (greedy, the golden max_tokens), tokens/s and TTFT p50.

Ratios are to the first version on the same runtime (or in process). Versions are measured one
after another, each runtime alone on the machine. Writes reports/bench_variants_<model>.{json,md}.
No figure here is ever asserted on: the machine is shared and noisy.
"""

from __future__ import annotations

import json

from scripts.measure.bench.report import fmt_ratio, machine_info
from scripts.measure.bench.setups import bench_of
from scripts.measure.generation_bench import Workload, in_process_language, in_process_limits
from scripts.measure.generation_bench import ratio, served
from scripts.measure.generation_report import fmt_ms
from scripts.measure.verify_generation import golden_generation
from scripts.pipeline.layout import Layout
from scripts.spec import ModelSpec

STREAMS = (1, 16)


def bench_variants(spec: ModelSpec, versions: list[int], layout: Layout, runtimes, log) -> dict:
    first = spec.at_version(versions[0])
    golden = golden_generation(first, layout)
    work = Workload(golden["prompts"], golden["max_tokens"])
    report: dict = {
        "model": spec.name,
        "versions": {v: variant_of(spec.at_version(v)) for v in versions},
        "streams": list(STREAMS),
        "max_tokens": work.max_tokens,
        "in_process": {},
        "served": {runtime.name: {} for runtime in runtimes},
    }
    for version in versions:
        log(f"version {version}: in process (static batched generate())")
        language = in_process_language(spec.at_version(version), layout)
        report["in_process"][version] = in_process_limits(language, work, STREAMS)
        del language
    for runtime in runtimes:
        for version in versions:
            at = spec.at_version(version)
            workdir = layout.run / "bench_variants" / runtime.name / f"v{version}"
            with bench_of(runtime).generation_deployment(at, layout, workdir, log) as deployed:
                call = deployed.calls[runtime.name]
                call(work.bodies(1)[0])  # warm: the first request pays for pages read in
                points = {c: served(call, work, c) for c in STREAMS}
            report["served"][runtime.name][version] = points
            rates = ", ".join(f"{p['tokens_per_s']:.1f}" for p in points.values())
            log(f"{runtime.name} version {version} streams {STREAMS}: {rates} tokens/s")
    report["ratios"] = ratios(report, versions)
    write_report(report, layout)
    return report


def variant_of(spec: ModelSpec) -> dict:
    """How the version serves: its format, and its draft's version when it speculates."""
    generation = spec.task.generation
    draft = generation.draft if generation else None
    shown = spec.serving.format + (f", draft v{draft.version}" if draft else "")
    return {"format": shown, "description": spec.description}


def ratios(report: dict, versions: list[int]) -> dict:
    """Per setup (in process, each runtime) and version: tokens/s over the first version's."""
    base = versions[0]
    out: dict = {"in_process": {}}
    for version in versions:
        limits = report["in_process"]
        out["in_process"][version] = {
            c: ratio(limits[version][c], limits[base][c]) for c in STREAMS
        }
    for runtime, by_version in report["served"].items():
        out[runtime] = {
            version: {
                c: ratio(points[c]["tokens_per_s"], by_version[base][c]["tokens_per_s"])
                for c in STREAMS
            }
            for version, points in by_version.items()
        }
    return out


def table(report: dict) -> list[str]:
    header = " | ".join(f"{c} stream{'s' * (c > 1)}: tokens/s (ratio)" for c in STREAMS)
    lines = [
        f"| setup | version | format | {header} | TTFT p50 ms at 1 | failed |",
        "| --- | --- | --- | " + "--- | " * len(STREAMS) + "--- | --- |",
    ]
    for version, limits in report["in_process"].items():
        cells = " | ".join(
            f"{limits[c]:.0f} ({fmt_ratio(report['ratios']['in_process'][version][c])})"
            for c in STREAMS
        )
        fmt = report["versions"][version]["format"]
        lines.append(f"| in process | {version} | {fmt} | {cells} | | |")
    for runtime, by_version in report["served"].items():
        for version, points in by_version.items():
            cells = " | ".join(
                f"{points[c]['tokens_per_s']:.0f} "
                f"({fmt_ratio(report['ratios'][runtime][version][c])})"
                for c in STREAMS
            )
            fmt = report["versions"][version]["format"]
            failed = sum(p["failed"] for p in points.values())
            ttft = fmt_ms(points[1]["ttft_p50_ms"])
            lines.append(f"| {runtime} | {version} | {fmt} | {cells} | {ttft} | {failed} |")
    return lines


def write_report(report: dict, layout: Layout) -> None:
    stem = layout.reports / f"bench_variants_{report['model']}"
    report["machine"] = machine_info()
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    lines = [
        f"# {report['model']}: versions side by side ({report['max_tokens']} tokens per request)",
        "",
        *table(report),
        "",
        f"Machine: {report['machine']}",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    report["paths"] = [str(stem.with_suffix(s)) for s in (".json", ".md")]
