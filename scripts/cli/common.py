"""What every command shares: the typer app, options, one-line user errors, a per-model
progress table."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scripts.spec import SpecError, UserError

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
    """(the spec's root, its models named by --model or all); the root is where paths resolve,
    where `module:` targets import from and where the build writes."""
    from scripts.spec import load_spec, spec_root

    spec = load_spec(spec_path)
    root = spec_root(spec_path, spec.root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root, spec.select(names)


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
