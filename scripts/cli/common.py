"""What every command shares: the typer app, options, the spec's Layout, one-line user
errors, a progress line."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scripts.spec import SpecError, UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
errors = Console(stderr=True)

SpecOption = Annotated[Path, typer.Option("--spec", help="The model spec.", show_default=True)]
ModelOption = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Only this model (repeat for several); default: all."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Rebuild even when nothing changed.")]


def user_errors(step):
    """Print a user's mistake as one line per problem, no traceback; exit 2 (spec) or 1."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except UserError as exc:
            for line in exc.problems:
                # escaped: a problem may quote a log line with [brackets] rich would parse
                errors.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, SpecError) else 1)

    return run


@app.callback()
def outputs(
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Where generated files go (default: the spec's folder)."),
    ] = None,
):
    """Build steps: models.yaml -> checkpoints -> verified exports -> servers."""
    OUTPUT["out"] = out


OUTPUT: dict[str, Path | None] = {"out": None}


def selected_models(spec_path: Path, names: list[str] | None):
    """(the spec's Layout, its models named by --model or all). The spec's folder is where its
    paths and `module:` targets resolve; outputs go there too unless --out / OUT= says otherwise."""
    from scripts.pipeline.layout import Layout
    from scripts.spec import load_spec, spec_root

    spec = load_spec(spec_path)
    root = spec_root(spec_path, spec.root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return Layout.of(root, OUTPUT["out"]), spec.select(names)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class StepLog:
    """A line for each model and step as it starts (a log or CI shows what the build is doing,
    not only a progress bar redrawn in place) and the slow steps' times at the end."""

    def __init__(self):
        self.times: dict[tuple[str, str], float] = {}
        self.current: tuple[str, str] | None = None
        self.started = self.since = time.monotonic()

    def at(self, step: str, name: str, detail: str = "") -> None:
        if (step, name) == self.current:
            return
        self.close()
        self.current, self.since = (step, name), time.monotonic()
        console.print(f"{step} {name} ...", highlight=False)

    def close(self) -> None:
        if self.current is not None:
            self.times[self.current] = time.monotonic() - self.since

    def summary(self) -> None:
        self.close()
        slow = {key: s for key, s in self.times.items() if s >= 1.0}  # up to date: quiet
        if slow:
            lines = ", ".join(f"{step} {name} {s:.1f}s" for (step, name), s in slow.items())
            console.print(f"build steps: {lines}; total {time.monotonic() - self.started:.1f}s")
