"""`make rollout`, `make rollback`, `make versions` and `make serve`'s restore, over the runtime
plugins and the servers `make serve` started. Per runtime a rollout is:

  build the version -> load it beside the serving one -> gate -> switch the default ->
  check an unversioned request gets the new version (else switch back) -> retire versions
  other than the new default and the one kept for a rollback, once they have drained.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.build.paths import artifact_dir
from scripts.rollout import state
from scripts.rollout.gate import Gate, golden_check, run_gate
from scripts.runtimes.registry import selected
from scripts.runtimes.serving import build_signed
from scripts.spec import ModelSpec, UserError


class RolloutRefused(UserError):
    """The gate or the check after the switch refused the version; the old one serves."""


@dataclass
class Outcome:
    runtime: str
    model: str
    action: str                 # rolled out / rolled back / refused / already serving
    default: int
    previous: int | None
    switch_s: float = 0.0
    gate: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def running_server(plugin, root: Path):
    server = plugin.running(root)
    if server is None:
        raise UserError([f"{plugin.title} is not running; start it with `make serve` first"])
    return server


def build(plugin, spec: ModelSpec, version: int, root: Path) -> None:
    """Train and export the version unless built (a built version is immutable: refused if its
    inputs changed since), then package it for this runtime."""
    from scripts.build.export import export_model
    from scripts.build.sealed import RECORD, refuse_changed
    from scripts.build.train import train_model

    versioned = spec.at_version(version)
    if (artifact_dir(versioned, root) / RECORD).exists():
        refuse_changed(versioned, root)
    else:
        if versioned.training is not None:
            train_model(versioned, root)
        export_model(versioned, root)
    if version == spec.version:
        build_signed(plugin, [spec], root)
    else:
        plugin.build_version(spec, version, root)


def after_switch_check(plugin, server, spec: ModelSpec, version: int, root: Path) -> list[str]:
    """Unversioned requests must now get exactly that version's golden outputs."""
    gate = Gate()
    golden_check(plugin.tensor_endpoints(server), spec.at_version(version), root, gate)
    return [p.replace(f"version {version} golden samples", "unversioned requests after the switch")
            for p in gate.problems]


def switch(plugin, server, spec: ModelSpec, version: int, keep: int | None, root: Path) -> tuple[float, list[str]]:
    """Make `version` the default; switched back to `keep` when the check after fails."""
    started = time.monotonic()
    plugin.make_default(server, spec, version, keep, root)
    took = time.monotonic() - started
    problems = after_switch_check(plugin, server, spec, version, root)
    if problems and keep is not None:
        plugin.make_default(server, spec, keep, version, root)
        problems.append(f"switched back to version {keep}")
    return took, problems


def drained(plugin, server, spec: ModelSpec, version: int, quiet_s: float = 1.0, timeout_s: float = 60) -> bool:
    """True once the version's finished-request count stays the same for quiet_s."""
    deadline = time.monotonic() + timeout_s
    last = plugin.requests_served(server, spec, version)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = plugin.requests_served(server, spec, version)
        if now == last:
            return True
        last = now
    return False


def retire_others(plugin, server, spec: ModelSpec, keep: set[int], root: Path) -> list[str]:
    notes = []
    for version in plugin.versions(server, spec).loaded:
        if version in keep:
            continue
        if drained(plugin, server, spec, version):
            plugin.unload(server, spec, version, root)
            notes.append(f"retired version {version}")
        else:
            notes.append(f"version {version} still answers requests that name it; left loaded")
    return notes


def rollout_one(plugin, server, spec: ModelSpec, version: int, root: Path) -> Outcome:
    serving = plugin.versions(server, spec).default
    if serving == version:
        return Outcome(plugin.name, spec.name, "already serving", version, state.served(root, plugin.name,
                                                                                          spec.name).get("previous"))
    build(plugin, spec, version, root)
    plugin.load_beside(server, spec, version, root)
    gate = run_gate(lambda: plugin.version_endpoints(server, spec, serving),
                    lambda: plugin.version_endpoints(server, spec, version),
                    spec.at_version(serving), spec.at_version(version), root)
    if not gate.passed:
        plugin.unload(server, spec, version, root)
        return Outcome(plugin.name, spec.name, "refused", serving, None, gate=gate.figures, problems=gate.problems)
    took, problems = switch(plugin, server, spec, version, serving, root)
    if problems:
        return Outcome(plugin.name, spec.name, "refused", serving, None, took, gate.figures, problems)
    notes = retire_others(plugin, server, spec, {version, serving}, root)
    state.record(root, plugin.name, spec.name, version, serving, gate.figures)
    return Outcome(plugin.name, spec.name, "rolled out", version, serving, took, gate.figures, notes)


def rollback_one(plugin, server, spec: ModelSpec, root: Path) -> Outcome:
    current = plugin.versions(server, spec).default
    previous = state.served(root, plugin.name, spec.name).get("previous")
    if previous is None or previous == current:
        raise UserError([f"{spec.name} on {plugin.title}: no previous version to roll back to "
                         f"(serving version {current}; see `make versions`)"])
    took, problems = switch(plugin, server, spec, previous, current, root)
    if problems:
        return Outcome(plugin.name, spec.name, "refused", current, previous, took, problems=problems)
    state.record(root, plugin.name, spec.name, previous, current, None)
    return Outcome(plugin.name, spec.name, "rolled back", previous, current, took)


def logged(root: Path, outcome: Outcome) -> Outcome:
    state.log(root, vars(outcome))
    return outcome


def servers_of(runtime: str, root: Path, servers: dict | None) -> list[tuple]:
    """[(plugin, server)]: the given servers ({runtime name: server}), else `make serve`'s."""
    return [(plugin, servers[plugin.name] if servers else running_server(plugin, root)) for plugin in selected(runtime)
            if not servers or plugin.name in servers]


def rollout(spec: ModelSpec, version: int, runtime: str, root: Path, servers: dict | None = None) -> list[Outcome]:
    spec.at_version(version)  # an unknown version is refused before anything runs
    outcomes = [logged(root, rollout_one(plugin, server, spec, version, root))
                for plugin, server in servers_of(runtime, root, servers)]
    refused = [f"{o.runtime}: {p}" for o in outcomes if o.action == "refused" for p in o.problems]
    if refused:
        raise RolloutRefused([f"{spec.name} version {version} refused (the serving version keeps all traffic):",
                              *refused])
    return outcomes


def rollback(spec: ModelSpec, runtime: str, root: Path, servers: dict | None = None) -> list[Outcome]:
    return [logged(root, rollback_one(plugin, server, spec, root))
            for plugin, server in servers_of(runtime, root, servers)]


def restore(runtime: str, models: list[ModelSpec], root: Path, servers: dict | None = None) -> list[str]:
    """After `make serve` started the runtime(s) on the spec's versions: bring each model back on
    the version last rolled out (with the one before it loaded for a rollback)."""
    lines = []
    for (plugin, server), spec in ((ps, m) for ps in servers_of(runtime, root, servers) for m in models):
        served = state.served(root, plugin.name, spec.name)
        if not served or served["default"] == spec.version or served["default"] not in spec.version_numbers:
            continue
        build(plugin, spec, served["default"], root)
        keep = served.get("previous")
        if keep is not None and keep != served["default"]:
            build(plugin, spec, keep, root)
        plugin.make_default(server, spec, served["default"], keep, root)
        lines.append(f"{plugin.title}: {spec.name} serves version {served['default']}, as last rolled out "
                     "(`make versions`)")
    return lines
