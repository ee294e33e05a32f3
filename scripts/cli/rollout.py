"""The version commands: rollout, rollback and versions, against the servers `make serve`
started."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scripts.cli.common import SpecOption, app, console, selected_models, user_errors
from scripts.cli.serve import RuntimeOption
from scripts import gateway
from scripts.rollout import flow
from scripts.rollout.drill import drill as run_drill
from scripts.rollout.flow import RolloutRefused
from scripts.rollout.state import read_state
from scripts.runtimes.protocols import Live, ServedVersions
from scripts.runtimes.registry import RUNTIMES, attached
from scripts.spec import ModelSpec, UserError, load_spec

OneModel = Annotated[str, typer.Option("--model", "-m", help="The model to roll out or back.")]


def gate_summary(gate: dict | None) -> str:
    """A gate's figures, one per line, as the tables show them."""
    gate = gate or {}
    figures = [
        f"labels agree {gate['label_agreement']:.1%}" if "label_agreement" in gate else "",
        f"max diff {gate['max_output_diff']:.3g}" if "max_output_diff" in gate else "",
        "p99 {serving:.1f} -> {candidate:.1f} ms".format(**gate["p99_ms"])
        if "p99_ms" in gate
        else "",
        f"tokens agree {gate['token_agreement']:.1%}" if "token_agreement" in gate else "",
        "TTFT {serving:.1f} -> {candidate:.1f} ms".format(**gate["ttft_p50_ms"])
        if "ttft_p50_ms" in gate
        else "",
        "tokens/s {serving:.0f} -> {candidate:.0f}".format(**gate["tokens_per_s"])
        if "tokens_per_s" in gate
        else "",
    ]
    return "\n".join(f for f in figures if f) or "-"


def print_outcomes(outcomes) -> None:
    table = Table("runtime", "model", "action", "default", "previous", "switch", "gate", "notes")
    for o in outcomes:
        table.add_row(
            o.runtime,
            o.model,
            o.action,
            str(o.default),
            str(o.previous or "-"),
            f"{o.switch_s:.2f}s" if o.switch_s else "-",
            gate_summary(o.gate),
            "\n".join(o.problems) or "-",
        )
    console.print(table)


@app.command()
@user_errors
def rollout(
    version: Annotated[int, typer.Option("--version", help="The version to serve.")],
    model: OneModel,
    spec: SpecOption = Path("models.yaml"),
    runtime: RuntimeOption = "all",
):
    """Build a version, load it beside the serving one, gate it, then make it the default."""
    layout, models = selected_models(spec, [model])
    try:
        outcomes = flow.rollout(models[0], version, runtime, layout)
    except RolloutRefused:
        console.print(
            f"see {layout.shown(layout.reports / 'rollouts.jsonl')} for the gate's figures"
        )
        raise
    print_outcomes(outcomes)
    follow_in_gateway(spec)


@app.command()
@user_errors
def rollback(
    model: OneModel, spec: SpecOption = Path("models.yaml"), runtime: RuntimeOption = "all"
):
    """Switch the default back to the version served before the last rollout."""
    layout, models = selected_models(spec, [model])
    print_outcomes(flow.rollback(models[0], runtime, layout))
    follow_in_gateway(spec)


def follow_in_gateway(spec: Path) -> None:
    """The running gateway's routes to the default versions the rollout just changed."""
    layout, every = selected_models(spec, None)
    for line in gateway.follow_versions(load_spec(spec).access, layout, every):
        console.print(line)


def live_versions(live: Live | None, spec: ModelSpec) -> tuple[ServedVersions | None, str]:
    """(the server's versions of the model, or None and why not)."""
    if live is None:
        return None, "server not running (`make serve` starts it on the versions last rolled out)"
    try:
        return live.versions(spec), ""
    except Exception as exc:  # a server dying or killed between the pid check and the call
        return None, f"server not answering: {type(exc).__name__}"


@app.command()
@user_errors
def versions(spec: SpecOption = Path("models.yaml")):
    """Per runtime and model: whether the server runs, the versions loaded, the default, when it
    changed and the gate's figures."""
    layout, models = selected_models(spec, None)
    recorded = read_state(layout)
    table = Table("runtime", "model", "loaded", "default", "last rolled out", "changed", "gate")
    for plugin in RUNTIMES.values():
        server = plugin.server.running(layout)
        live = plugin.attach(server) if server is not None else None
        for m in models:
            entry = recorded.get(plugin.name, {}).get(m.name, {})
            served, problem = live_versions(live, m)
            table.add_row(
                plugin.name,
                m.name,
                ", ".join(map(str, served.loaded)) if served else f"[red]{problem}[/]",
                str(served.default) if served else "-",
                str(entry.get("default", m.version)),
                entry.get("changed", "-"),
                gate_summary(entry.get("gate")),
            )
    console.print(table)
    console.print(f"log: {layout.shown(layout.reports / 'rollouts.jsonl')}")


@app.command()
@user_errors
def drill(
    version: Annotated[int, typer.Option("--version", help="The version to roll out and back.")],
    model: OneModel,
    spec: SpecOption = Path("models.yaml"),
    clients: Annotated[int, typer.Option(help="Unversioned clients per endpoint.")] = 4,
):
    """Roll a version out and back on every running runtime while clients send requests; count
    failed requests and which version answered, per phase (reports/drill_<model>.json)."""
    layout, models = selected_models(spec, [model])
    running = {name: plugin.server.running(layout) for name, plugin in RUNTIMES.items()}
    servers = {name: server for name, server in running.items() if server is not None}
    if not servers:
        raise UserError(["no server is running; start them with `make serve` first"])
    with contextlib.ExitStack() as stack:
        passage = None
        if load_spec(spec).access is not None:  # served behind the gateway: drilled through it
            lives, folder = attached(servers), layout.state("drill_gateway")
            passage = stack.enter_context(gateway.fronting(lives, models, layout.root, folder))
        report = run_drill(models[0], version, servers, layout, clients, passage=passage)
    table = Table(
        "runtime",
        "phase",
        "requests",
        "failed",
        "answered by version",
        "wrong version",  # named one version, answered by another: never expected
        "p50 ms",
        "p99 ms",
    )
    for phase, per_runtime in report["phases"].items():
        for runtime, s in per_runtime.items():
            table.add_row(
                runtime,
                phase,
                str(s["requests"]),
                str(s["failed"]),
                ", ".join(f"v{v}: {n}" for v, n in s["by_version"].items()),
                str(s.get("wrong_version", 0)),
                f"{s['p50_ms']:.1f}" if s["p50_ms"] else "-",
                f"{s['p99_ms']:.1f}" if s["p99_ms"] else "-",
            )
    console.print(f"{report['clients']} clients: {', '.join(report['client_kinds'])}")
    console.print(table)
    for runtime, switch in report["switch_s"].items():
        console.print(
            f"{runtime}: switch {switch.get('rollout', 0):.3f}s, "
            f"rollback {switch.get('rollback', 0):.3f}s"
        )
    console.print(f"report: {layout.shown(layout.reports / f'drill_{model}.json')}")
