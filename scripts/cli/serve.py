"""The serving commands: serve, stop, and verify (every served endpoint against eager PyTorch)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scripts.cli.common import (
    ModelOption,
    SpecOption,
    StepLog,
    app,
    console,
    selected_models,
    user_errors,
)
from scripts.measure.verification import verify_served_versions
from scripts.measure.verify_served import write_report
from scripts.monitor import prometheus
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.train import checkpoint_dir
from scripts.rollout import flow
from scripts.runtimes import serving as runtime_serving
from scripts.runtimes.registry import RUNTIMES, attached, selected
from scripts.runtimes.serving import serving, stop_all
from scripts import gateway
from scripts.spec import BuildError, UserError, VerificationError, load_spec

RuntimeOption = Annotated[str, typer.Option("--runtime", help="all, torchserve or triton.")]


@app.command()
@user_errors
def serve(
    spec: SpecOption = Path("models.yaml"),
    model: ModelOption = None,
    runtime: RuntimeOption = "all",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for READY.")] = 300,
):
    """Start the runtime(s) in the background and wait until every model is READY."""
    layout, models = selected_models(spec, model)
    # every runtime's artifacts before any starts; a model that cannot be built is left out
    runtimes = selected(runtime)
    with StepLog(models, runtimes) as steps:
        built = steps.record(ensure_built(models, layout, runtimes, keep_going=True, say=steps.at))
    unbuilt = [f"{why} (not served)" for why in built.failed.values()]
    models = [m for m in models if m.name not in built.failed]
    if not models:
        raise BuildError(unbuilt)
    try:
        # looked up on their modules when called: tests replace them there
        lines = runtime_serving.serve_runtimes(runtime, models, layout, timeout) + flow.restore(
            runtime, models, layout
        )
    except BuildError as exc:  # models that failed to load: named beside those never built
        raise BuildError(exc.problems + unbuilt) from None
    access = load_spec(spec).access
    if access is not None:  # the gateway in front of what now runs
        lines += gateway.serve_gateway(access, layout, models)
    for line in lines:
        console.print(line, highlight=False)
    if unbuilt:
        raise BuildError(unbuilt)


@app.command("access-reload")
@user_errors
def access_reload(spec: SpecOption = Path("models.yaml")):
    """Apply the spec's `access:` (keys added, rotated or revoked, scopes, limits) to the running
    gateway without a restart: requests in flight finish on the old workers."""
    layout, models = selected_models(spec, None)
    access = load_spec(spec).access
    if access is None:
        raise UserError(["the spec has no access: section; see docs/operations.md"])
    if gateway.running(gateway.state(layout)) is None:
        raise UserError(["the gateway does not run: `make serve` starts it"])
    for line in gateway.serve_gateway(access, layout, models):
        console.print(line, highlight=False)


@app.command()
@user_errors
def stop(spec: SpecOption = Path("models.yaml")):
    """Stop the gateway, every runtime that `serve` started, and `monitor`'s Prometheus."""
    layout, _ = selected_models(spec, None)
    if gateway.stop(gateway.state(layout)):  # first: no client reaches a stopping runtime
        console.print("gateway stopped")
    for line in stop_all(layout):
        console.print(line)
    if prometheus.stop(layout.state("prometheus")):
        console.print("Prometheus stopped")


@app.command()
@user_errors
def monitor(
    spec: SpecOption = Path("models.yaml"),
    port: Annotated[int, typer.Option(help="Prometheus' port on 127.0.0.1.")] = 9090,
):
    """Start Prometheus on loopback, scraping `serve`'s running servers, with the spec's alert
    rules (checked by promtool) and a Grafana dashboard written beside them."""
    layout, models = selected_models(spec, None)
    servers = {name: r.server.running(layout) for name, r in RUNTIMES.items()}
    targets = {name: s.metrics_address for name, s in servers.items() if s is not None}
    if not targets:
        raise UserError(["no server runs: `make serve` first, then `make monitor`"])
    workdir = layout.state("prometheus")
    if prometheus.stop(workdir):
        console.print("Prometheus restarted with a fresh configuration")
    server = prometheus.start(workdir, targets, models, f"torchship {spec.name}", port)
    for job, address in targets.items():
        console.print(f"scraping {job} at http://{address}/metrics", highlight=False)
    for label, path in (
        ("Prometheus", server.url),
        ("alerts", f"{server.url}/alerts"),
        ("rules", layout.shown(server.rules_file)),
        ("Grafana dashboard", layout.shown(server.workdir / "dashboard.json")),
    ):
        console.print(f"  {label.ljust(18)} {path}", highlight=False)


@app.command()
@user_errors
def clean(spec: SpecOption = Path("models.yaml")):
    """Remove what the build generated for the spec (run `stop` first: pid files live there)."""
    import shutil

    layout, models = selected_models(spec, None)
    if any(runtime.server.running(layout) for runtime in RUNTIMES.values()):
        raise UserError(["servers started by `make serve` still run; `make stop` first"])

    trained = {  # a Hugging Face folder's too (its source has no checkpoint file)
        checkpoint_dir(v, layout)
        for m in models
        if m.training is not None
        for v in (m.at_version(n) for n in m.version_numbers)
    }
    for folder in [*layout.generated(), *sorted(trained)]:
        for entry in folder.iterdir() if folder.is_dir() else []:
            if entry.name != ".gitkeep":  # the checkout keeps its empty output folders
                shutil.rmtree(
                    entry
                ) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        console.print(f"cleaned {layout.shown(folder)}/", highlight=False)


@app.command("verify")
@user_errors
def verify_served(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Send every golden sample and example request through every served endpoint and compare
    with eager PyTorch (reuses running servers, else starts and stops them)."""
    layout, models = selected_models(spec, model)
    ensure_built(models, layout, list(RUNTIMES.values()))
    gated = load_spec(spec).access is not None  # served behind the gateway: checked through it
    with serving(models, layout) as servers, contextlib.ExitStack() as stack:
        passage = None
        if gated:
            lives = attached(servers)
            folder = layout.state("verify_gateway")
            passage = stack.enter_context(gateway.fronting(lives, models, layout.root, folder))
        checks = verify_served_versions(models, layout, servers, passage)
    table = Table("model", "endpoint", "samples", "max |error|", "result")
    for c in checks:
        table.add_row(
            c.model,
            c.endpoint,
            str(c.samples),
            f"{c.max_abs_error:.2e}",
            "[green]pass[/]" if c.passed else f"[red]FAIL[/] {c.detail}",
        )
    console.print(table)
    write_report(checks, layout.reports / "verify.json")
    console.print(f"report: {layout.shown(layout.reports / 'verify.json')}")
    failed = [f"{c.model} via {c.endpoint}: {c.detail}" for c in checks if not c.passed]
    if failed:
        raise VerificationError(failed)
