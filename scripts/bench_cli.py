"""The `bench` and `tune` steps' command-line functions. Registered in scripts/cli.py:

    from scripts.bench_cli import bench, tune  # noqa: E402
    app.command("bench")(bench)
    app.command("tune")(tune)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from scripts.cli import SpecOption, console, selected_models, user_errors


@user_errors
def bench(spec: SpecOption = Path("models.yaml"),
          model: Annotated[Optional[list[str]], typer.Option(
              "--model", "-m", help="Only this model (repeat for several); default: digits_cnn, "
                                    "sentiment_lstm and tabular_mlp (briefly).")] = None,
          quick: Annotated[bool, typer.Option("--quick", help="Concurrency 1 and 16, shorter windows.")] = False,
          out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("reports")):
    """In-process limit, stock setups and this project's deployments under perf_analyzer load:
    reports/bench.json, bench.md and PNG plots, every ratio from this one run."""
    from scripts.bench import BRIEF_MODELS, FULL_MODELS, run_bench

    root, models = selected_models(spec, model or None)
    if not model:
        wanted = set(FULL_MODELS) | set(BRIEF_MODELS)
        models = [m for m in models if m.name in wanted] or models
    out = out if out.is_absolute() else root / out
    report = run_bench(models, root, out, quick, log=lambda line: console.print(line, highlight=False))
    table = Table("target", "status", "figures")
    for t in report["targets"]:
        color = {"met": "green", "missed": "red"}.get(t["status"], "yellow")
        table.add_row(t["text"], f"[{color}]{t['status']}[/]", t["detail"])
    console.print(table)
    console.print(f"report: {out / 'bench.md'} ({report['timings']['total_s']:.0f}s)")


@user_errors
def tune(spec: SpecOption = Path("models.yaml"),
         model: Annotated[str, typer.Option("--model", "-m", help="The spec model to tune.")] = "digits_cnn",
         budget: Annotated[float, typer.Option("--budget", help="Seconds for the whole sweep.")] = 180,
         concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="perf_analyzer load.")] = 16):
    """Sweep max batch size x queue delay x instances x format on Triton within a time budget;
    writes reports/tune_<model>.json and prints the best settings as spec fields."""
    from scripts.tune import run_tune

    root, models = selected_models(spec, [model])
    report = run_tune(models[0], root, budget, concurrency,
                      log=lambda line: console.print(line, highlight=False))
    console.print(f"report: reports/tune_{model}.json ({report['seconds']:.0f}s)")
    if report["suggestion"]:
        console.print("suggested for models.yaml:", highlight=False)
        console.print(report["suggestion"], highlight=False, markup=False)
