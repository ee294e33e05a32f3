"""`python -m scripts <step>`: the command line behind the Makefile's targets."""
from __future__ import annotations

import functools
from enum import Enum
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scripts.errors import SpecError, UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Build steps: models.yaml -> checkpoints -> verified exports -> servers.")
console = Console(soft_wrap=True)
errors = Console(stderr=True)

SpecOption = Annotated[Path, typer.Option("--spec", help="The model spec.", show_default=True)]
ModelOption = Annotated[Optional[list[str]], typer.Option(
    "--model", "-m", help="Only this model (repeat for several); default: all.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Rebuild even when nothing changed.")]


def user_errors(step):
    """Print a user's mistake as one line per problem, no traceback; exit 2 (spec) or 1."""
    @functools.wraps(step)
    def run(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except UserError as exc:
            for line in exc.problems:
                errors.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, SpecError) else 1)
    return run


def selected_models(spec_path: Path, names: list[str] | None):
    from scripts.spec import load_spec

    return spec_path.resolve().parent, load_spec(spec_path).select(names)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=False)


def per_model(step: str, models, columns: list[str], row) -> None:
    """Run row(model, say) for each model under a progress bar, then print one table row per
    model; `say(detail)` shows what the step is doing right now."""
    table = Table("model", *columns)
    with progress() as bar:
        task = bar.add_task(step, total=len(models))
        for m in models:
            def say(detail: str = "", name: str = m.name) -> None:
                bar.update(task, description=f"{step} {name}" + (f": {detail}" if detail else ""))
            say()
            table.add_row(m.name, *row(m, say))
            bar.advance(task)
    console.print(table)


@app.command()
@user_errors
def train(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Train every model that has a `training` section (fixed seeds, incremental)."""
    from scripts.train import train_model

    root, models = selected_models(spec, model)

    def row(m, say):
        if m.training is None:
            return "no training section", f"uses {m.source.checkpoint or m.source.exported}"
        result = train_model(m, root, force)
        return ("up to date" if result.skipped else "trained",
                ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))

    per_model("train", models, ["status", "held-out metrics"], row)


@app.command()
@user_errors
def export(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Export each model to the spec's formats and verify them against eager PyTorch."""
    from scripts.export import export_model
    from scripts.verify import worst_errors

    root, models = selected_models(spec, model)

    def row(m, say):
        result = export_model(m, root, force, on_format=say)
        return ("up to date" if result.skipped else "exported + verified",
                ", ".join(f"{fmt} {err:.2e}" for fmt, err in worst_errors(result.report).items()))

    per_model("export", models, ["status", "worst |error| per format (batch sizes 1, 3, max)"], row)


@app.command()
@user_errors
def archive(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Build one TorchServe .mar per model into model_store/ (incremental)."""
    from scripts.archive import archive_model, mar_path

    root, models = selected_models(spec, model)

    def row(m, say):
        built = archive_model(m, root, root / "model_store", force)
        return "archived" if built else "up to date", str(mar_path(m, Path("model_store")))

    per_model("archive", models, ["status", "archive"], row)


class Runtime(str, Enum):
    all = "all"
    torchserve = "torchserve"
    triton = "triton"


@app.command("verify-artifacts")
@user_errors
def verify_artifacts(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Refuse any .mar whose files do not match its SHA-256 manifest."""
    from scripts.archive import mar_path, verify_archive
    from scripts.errors import BuildError

    root, models = selected_models(spec, model)
    problems = []
    for m in models:
        found = verify_archive(mar_path(m, root / "model_store"))
        problems += found
        console.print(f"{m.name}.mar: " + ("[red]REFUSED[/]" if found else "[green]intact[/]"))
    if problems:
        raise BuildError(problems)


@app.command("verify")
@user_errors
def verify_served(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Send every golden sample and example request through every served endpoint and compare
    with eager PyTorch (reuses running servers, else starts and stops them)."""
    from scripts.errors import VerificationError
    from scripts.serve import serving
    from scripts.verify_served import endpoints_for, verify_models, write_report

    root, models = selected_models(spec, model)
    with serving(models, root) as (torchserve, triton):
        checks = verify_models(models, root, endpoints_for(torchserve, triton))
    table = Table("model", "endpoint", "samples", "max |error|", "result")
    for c in checks:
        table.add_row(c.model, c.endpoint, str(c.samples), f"{c.max_abs_error:.2e}",
                      "[green]pass[/]" if c.passed else f"[red]FAIL[/] {c.detail}")
    console.print(table)
    write_report(checks, root / "reports" / "verify.json")
    console.print("report: reports/verify.json")
    failed = [f"{c.model} via {c.endpoint}: {c.detail}" for c in checks if not c.passed]
    if failed:
        raise VerificationError(failed)


RuntimeOption = Annotated[Runtime, typer.Option("--runtime", help="Which runtime(s) to start.")]


@app.command()
@user_errors
def serve(spec: SpecOption = Path("models.yaml"), model: ModelOption = None,
          runtime: RuntimeOption = Runtime.all,
          timeout: Annotated[float, typer.Option(help="Seconds to wait for READY.")] = 300):
    """Start the runtime(s) in the background and wait until every model is READY."""
    from scripts.serve import serve_runtimes

    root, models = selected_models(spec, model)
    for line in serve_runtimes(runtime.value, models, root, timeout):
        console.print(line, highlight=False)


@app.command()
@user_errors
def stop(spec: SpecOption = Path("models.yaml")):
    """Stop every runtime that `serve` started."""
    from scripts.serve import stop_all

    for line in stop_all(spec.resolve().parent):
        console.print(line)


@app.command()
@user_errors
def check(spec: SpecOption = Path("models.yaml")):
    """Validate the spec and list its models."""
    _, models = selected_models(spec, None)
    for m in models:
        console.print(f"{m.name} v{m.version}: {m.task.kind}, formats {m.export.formats}, serves {m.serving.format}")


# The Triton steps live in their own module, which imports the options above.
from scripts.triton_cli import perf, triton_repo  # noqa: E402

app.command("triton-repo")(triton_repo)
app.command("perf")(perf)

from scripts.bench_cli import bench, tune  # noqa: E402

app.command("bench")(bench)
app.command("tune")(tune)


def main() -> None:
    app(prog_name=f"{Path(sys.executable).name} -m scripts")
