"""What every command shares: the typer app, options, the spec's Layout, one-line user
errors, the build's progress and its table of steps."""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scripts.pipeline.layout import Layout
from scripts.spec import SpecError, UserError, load_spec, spec_root

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
    spec = load_spec(spec_path)
    root = spec_root(spec_path, spec.root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return Layout.of(root, OUTPUT["out"]), spec.select(names)


@dataclass
class Step:
    """One model's step as the build ran it."""

    model: str
    step: str  # train, export, package <runtime>
    seconds: float = 0.0


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    return f"{whole // 60}m {whole % 60:02d}s"


def short(reason: str, name: str, width: int = 60) -> str:
    """A failure's reason for a table cell, without the runtime and model it starts with (the
    full reason is printed after the table)."""
    line = (reason.split(f"{name}: ", 1)[-1].splitlines() or [""])[0]
    return line if len(line) <= width else line[: width - 3] + "..."


class StepLog:
    """What the build is doing, as it does it, then a table of each model's steps: its time and
    outcome (built / up to date / failed: why), and the total.

    `ensure_built(say=...)` reports each step as it starts, and export each format it starts
    on. Each step gets a line as it starts, so a CI log shows where the build is, not only a
    bar redrawn in place; the formats get a bar on a terminal and a line each elsewhere (no
    escape sequences, nothing redrawn). Training's epochs and verification's batch sizes are
    not reported by train.py / verify.py: their steps show their time only."""

    def __init__(self, models=(), runtimes=(), out: Console | None = None, clock=time.monotonic):
        self.out = out or console
        self.clock = clock
        # export says each format it starts on (a language model's folder export says none)
        self.counts = {
            m.name: len(m.export.wanted) for m in models if not m.task.serving.pretrained
        }
        self.runtimes = {r.title: r.name for r in runtimes}  # package steps name the title
        self.steps: list[Step] = []
        self.items = 0  # the current step's items started
        self.built = None  # ensure_built's result: each step's outcome
        self.bar: Progress | None = None
        self.started = self.since = self.ended = clock()

    def __enter__(self) -> StepLog:
        if self.out.is_terminal and not self.out.is_dumb_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.out,
                transient=True,  # the table below takes its place
            )
            self.task = self.bar.add_task("build", total=None)
            self.bar.start()
        self.started = self.since = self.clock()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.close()
        self.ended = self.clock()
        if self.steps:  # also when the build raised: how far it got
            self.out.print(self.table())

    def record(self, built):
        self.built = built
        return built

    def at(self, stage: str, name: str, detail: str = "") -> None:
        """ensure_built's `say`: a package step's detail is its runtime, export's a format."""
        step = f"{stage} {detail}" if stage == "package" else stage
        total = self.counts.get(name) if stage == "export" else None
        if not self.steps or (self.steps[-1].model, self.steps[-1].step) != (name, step):
            self.close()
            self.steps.append(Step(name, step))
            self.since, self.items = self.clock(), 0
            self.out.print(f"{step} {name} ...", highlight=False, markup=False)
            if self.bar is not None:
                self.bar.reset(self.task, total=total, description=f"{step} {name}")
        if detail and stage != "package":
            self.items += 1
            if self.bar is not None:  # the bar counts the items done; this one is under way
                self.bar.update(
                    self.task, completed=self.items - 1, description=f"{step} {name}: {detail}"
                )
            else:
                count = f" ({self.items}/{total})" if total else ""
                self.out.print(f"{step} {name}: {detail}{count}", highlight=False, markup=False)

    def close(self) -> None:
        if self.steps:
            self.steps[-1].seconds = self.clock() - self.since

    def outcome(self, step: Step, later: bool) -> str:
        """built / up to date from ensure_built's result, else failed (the model's last step)."""
        if self.built is None:  # the build raised
            return "done" if later else "stopped"
        names = step.model.split(", ")  # one package step for several models without keep_going
        if step.step in ("train", "export"):
            results = self.built.trained if step.step == "train" else self.built.exported
            found = [r.skipped for r in results if r.name in names]
        else:
            runtime = self.runtimes.get(step.step.removeprefix("package "), "")
            rows = self.built.packaged.get(runtime, [])
            found = [r.status == "up to date" for r in rows if r.model in names]
        if found:
            return "up to date" if all(found) else "built"
        failed = self.built.failed.get(step.model)
        if failed is not None and not later:
            return f"failed: {short(failed, step.model)}"
        return "done"  # a step of a model that failed later (its result is not kept)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(model, step, time, outcome) for each step in order, then the total."""
        rows = []
        for i, step in enumerate(self.steps):
            later = any(s.model == step.model for s in self.steps[i + 1 :])
            rows.append((step.model, step.step, duration(step.seconds), self.outcome(step, later)))
        tally = Counter(outcome.split(":")[0] for *_, outcome in rows)
        total = ", ".join(f"{n} {outcome}" for outcome, n in tally.items())
        return rows + [("total", "", duration(self.ended - self.started), total)]

    def table(self) -> Table:
        table = Table("model", "step", "time", "outcome", title="build steps")
        table.columns[2].justify = "right"
        *steps, total = self.rows()
        for row in steps:  # a reason may quote [brackets] that rich would parse
            table.add_row(*map(escape, row))
        table.add_section()
        table.add_row(*total)
        return table
