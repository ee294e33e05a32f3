"""The serving commands: serve, stop, and verify (every served endpoint against eager PyTorch)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scripts.cli.common import ModelOption, SpecOption, app, console, selected_models, user_errors

RuntimeOption = Annotated[str, typer.Option("--runtime", help="all, torchserve or triton.")]


@app.command()
@user_errors
def serve(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, runtime: RuntimeOption = "all",
          timeout: Annotated[float, typer.Option(help="Seconds to wait for READY.")] = 300):
    """Start the runtime(s) in the background and wait until every model is READY."""
    from scripts.rollout.flow import restore
    from scripts.runtimes.serving import serve_runtimes

    root, models = selected_models(spec, model)
    for line in serve_runtimes(runtime, models, root, timeout) + restore(runtime, models, root):
        console.print(line, highlight=False)


@app.command()
@user_errors
def stop(spec: SpecOption = Path("models.yaml")):
    """Stop every runtime that `serve` started."""
    from scripts.runtimes.serving import stop_all
    from scripts.spec import load_spec, spec_root

    for line in stop_all(spec_root(spec, load_spec(spec).root)):
        console.print(line)


@app.command("verify")
@user_errors
def verify_served(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Send every golden sample and example request through every served endpoint and compare
    with eager PyTorch (reuses running servers, else starts and stops them)."""
    from scripts.pipeline.paths import REPORTS
    from scripts.measure.verify_served import verify_served_versions, write_report
    from scripts.runtimes.serving import serving
    from scripts.spec import VerificationError

    root, models = selected_models(spec, model)
    with serving(models, root) as servers:
        checks = verify_served_versions(models, root, servers)
    table = Table("model", "endpoint", "samples", "max |error|", "result")
    for c in checks:
        table.add_row(c.model, c.endpoint, str(c.samples), f"{c.max_abs_error:.2e}",
                      "[green]pass[/]" if c.passed else f"[red]FAIL[/] {c.detail}")
    console.print(table)
    write_report(checks, root / REPORTS / "verify.json")
    console.print("report: reports/verify.json")
    failed = [f"{c.model} via {c.endpoint}: {c.detail}" for c in checks if not c.passed]
    if failed:
        raise VerificationError(failed)
