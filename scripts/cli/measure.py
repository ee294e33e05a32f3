"""The measuring commands: perf (perf_analyzer against a served model), bench, tune."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from scripts.measure.bench.run import BRIEF_MODELS, FULL_MODELS, run_bench
from scripts.measure.bench.setups import BENCHED, benched
from scripts.measure.generation_bench import bench_generation as measure_generation
from scripts.measure.generation_report import table, targets
from scripts.measure.variant_bench import bench_variants, table as variant_table
from scripts.measure.perf import run as run_perf, served_admin_key
from scripts.measure.tune import run_tune, snippet
from scripts.measure.tune.rule import LOADS
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.layout import Layout
from scripts.cli.serve import RuntimeOption
from scripts.cli.common import ModelOption, SpecOption, app, console, selected_models, user_errors
from scripts.pipeline.paths import golden
from scripts.pipeline.plan import serving_plan
from scripts.spec import BuildError, ModelSpec
from scripts.tasks import task_of


def refuse_other_measures(models: list[ModelSpec], command: str) -> None:
    """Requests/s of one-pass models are this command's; a model whose task kind is measured
    otherwise (a generation model: tokens/s) is sent to its own command."""
    for m in models:
        elsewhere = task_of(m).bench_command
        if elsewhere != "bench":
            raise typer.BadParameter(
                f"{m.name} is a {m.task.kind} model: `make {command}` measures one-pass models; "
                f"its figures come from `make {elsewhere} MODEL={m.name}`"
            )


@app.command()
@user_errors
def bench(
    spec: SpecOption = Path("models.yaml"),
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            "--model",
            "-m",
            help="Only this model (repeat for several); default: digits_cnn, "
            "sentiment_lstm and tabular_mlp (briefly).",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Concurrency 1 and 16, shorter windows.")
    ] = False,
    in_process_only: Annotated[
        bool,
        typer.Option(
            "--in-process-only",
            help="Only the in-process figures (formats, int8 vs fp32): no servers.",
        ),
    ] = False,
    reports: Annotated[
        Optional[Path],
        typer.Option("--reports", help="Report folder (default: reports/ in the output folder)."),
    ] = None,
):
    """In-process limit, stock setups and this project's deployments under perf_analyzer load:
    reports/bench.json, bench.md and PNG plots, every ratio from this one run."""
    layout, models = selected_models(spec, model or None)
    if not model:
        wanted = set(FULL_MODELS) | set(BRIEF_MODELS)
        models = [m for m in models if m.name in wanted] or models
    refuse_other_measures(models, "bench")
    ensure_built(
        models,
        layout,
        [] if in_process_only else BENCHED,
        through="export" if in_process_only else "package",
    )
    out = reports.resolve() if reports else layout.reports
    report = run_bench(
        models,
        layout,
        out,
        quick,
        log=lambda line: console.print(line, highlight=False),
        in_process_only=in_process_only,
    )
    table = Table("target", "status", "figures")
    for t in report["targets"]:
        color = {"met": "green", "missed": "red"}.get(t["status"], "yellow")
        table.add_row(t["text"], f"[{color}]{t['status']}[/]", t["detail"])
    console.print(table)
    alone = Table("model", "setup", "protocol", "x stock at c=1", "p50 ours vs stock (ms)")
    for r in report["one_client"]:
        ratio = r["throughput_vs_stock"]
        color = "green" if ratio >= 1.0 else "red"
        alone.add_row(
            r["model"],
            r["setup"],
            r["protocol"],
            f"[{color}]{ratio:.2f}x[/]",
            f"{r['p50_ms']:.3f} vs {r['stock_p50_ms']:.3f}",
        )
    console.print(alone)
    console.print(f"report: {layout.shown(out / 'bench.md')} ({report['timings']['total_s']:.0f}s)")


@app.command()
@user_errors
def tune(
    spec: SpecOption = Path("models.yaml"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="The spec model to tune.")
    ] = "digits_cnn",
    runtime: Annotated[str, typer.Option("--runtime", help="all, torchserve or triton.")] = "all",
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            help="Seconds for the whole sweep, shared by the runtimes (stock and spec included).",
        ),
    ] = 900,
    load: Annotated[
        str,
        typer.Option(
            "--load",
            help="The load to tune for: any (concurrency 1-64), low (1 and 4) or high (16 and 64).",
        ),
    ] = "any",
):
    """Sweep queue delay, dynamic batching, max batch size, instances, workers, threads and
    format on real servers, judge each against the stock setup at the load's concurrencies, pick
    by the latency-aware rule: reports/tune_<model>.{json,yaml,png}."""
    if load not in LOADS:
        raise typer.BadParameter(f"unknown load {load!r}; choose one of {sorted(LOADS)}")
    layout, models = selected_models(spec, [model])
    refuse_other_measures(models, "tune")
    report = run_tune(
        models[0],
        layout,
        benched(runtime),
        budget,
        log=lambda line: console.print(line, highlight=False),
        load=load,
    )
    console.print(
        f"report: {layout.shown(layout.reports)}/tune_{model}.json, tune_{model}.png "
        f"({report['seconds']:.0f}s)"
    )
    if report["spec_fields"]:
        console.print(
            f"the rule's choices, as spec fields (reports/tune_{model}.yaml):", highlight=False
        )
        typer.echo(snippet(report))


class Protocol(str, Enum):
    http = "http"
    grpc = "grpc"
    both = "both"


def perf_rows(spec: ModelSpec, layout: Layout, served: str) -> dict:
    """Request data: golden inputs for the tensor model; for an ensemble, the golden examples
    turned back into what a client sends (text; images are bytes, sent base64)."""
    import numpy as np

    rows = golden(spec, layout)
    if served == spec.name:
        return rows
    plan = serving_plan(spec, layout)
    examples = [plan.preprocess.encode(row, plan.assets) for row in rows[spec.inputs[0].name]]
    return {plan.preprocess.ensemble_input: np.array(examples, dtype=np.object_)}


@app.command()
@user_errors
def perf(
    spec: SpecOption = Path("models.yaml"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="Served model: a spec name or <name>_ensemble.")
    ] = "digits_cnn",
    # HTTP: perf_analyzer reads Triton's statistics API, locked behind the admin key, and sends
    # the key over HTTP only
    protocol: Annotated[Protocol, typer.Option("--protocol")] = Protocol.http,
    concurrency: Annotated[
        Optional[list[int]], typer.Option("--concurrency", "-c", help="Repeat for several.")
    ] = None,
    http_port: int = 8000,
    grpc_port: int = 8001,
):
    """perf_analyzer against a served model: throughput and p50/p99 latency per concurrency."""
    layout, models = selected_models(spec, None)
    owner = next((m for m in models if model in (m.name, f"{m.name}_ensemble")), None)
    if owner is None:
        raise BuildError(
            f"unknown model {model!r}; serve one of the spec's models or <name>_ensemble"
        )
    refuse_other_measures([owner], "perf")
    rows = perf_rows(owner, layout, model)
    table = Table("model", "protocol", "concurrency", "infer/s", "p50 ms", "p99 ms")
    protocols = ["http", "grpc"] if protocol == Protocol.both else [protocol.value]
    for proto in protocols:
        port = http_port if proto == "http" else grpc_port
        for r in run_perf(
            model,
            f"127.0.0.1:{port}",
            proto,
            concurrency or [1, 16],
            rows,
            layout.state("perf"),
            admin_key=served_admin_key(layout),
        ):
            table.add_row(
                model,
                proto,
                str(r["concurrency"]),
                f"{r['throughput']:.1f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
            )
    console.print(table)


@app.command("bench-generation")
@user_errors
def bench_generation(
    spec: SpecOption = Path("models.yaml"),
    model: ModelOption = None,
    runtime: RuntimeOption = "all",
    versions: Annotated[
        str | None,
        typer.Option(
            "--versions",
            help="e.g. 1,3: these versions side by side, ratios to the first (an optimised "
            "variant against its fp32 original)",
        ),
    ] = None,
):
    """A generation model's output tokens/s, TTFT and inter-token latency (p50/p99), streamed
    at 1, 4, 16 and 64 concurrent requests on each runtime, beside the runtime's stock
    generate() setup, against static batched generate() in one process. With --versions: those
    versions side by side instead."""
    layout, models = selected_models(spec, model)
    models = [m for m in models if task_of(m).bench_command == "bench-generation"]
    if not models:
        raise typer.BadParameter("no generation model selected (task: {kind: generation})")
    runtimes = benched(runtime)
    if versions is not None:
        compare_versions(models, parse_versions(versions), layout, runtimes)
        return
    ensure_built(models, layout, runtimes)
    for m in models:
        report = measure_generation(m, layout, runtimes, lambda line: console.print(escape(line)))
        console.print("\n".join([*table(report), "", *targets(report)]))
        for path in report["paths"]:
            console.print(f"report: {layout.shown(Path(path))}")


def parse_versions(text: str) -> list[int]:
    try:
        numbers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if len(numbers) < 2:
        raise typer.BadParameter(f"--versions {text!r}: give two or more, e.g. 1,3")
    return numbers


def compare_versions(models: list[ModelSpec], versions: list[int], layout: Layout, runtimes):
    if len(models) != 1:
        raise typer.BadParameter("VERSIONS= compares one model's versions: give MODEL= too")
    spec = models[0]
    for version in versions:
        ensure_built([spec], layout, runtimes, version=version)
    report = bench_variants(
        spec, versions, layout, runtimes, lambda line: console.print(escape(line))
    )
    console.print("\n".join(variant_table(report)))
    for path in report["paths"]:
        console.print(f"report: {layout.shown(Path(path))}")
