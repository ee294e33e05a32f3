"""One runtime's steps of a rollout (scripts/rollout/flow.py decides across runtimes): find its
running server, build a version, load it beside the serving one and gate it (a Candidate),
switch the default and check unversioned requests get it, retire versions once they have
drained; and the Outcome each runtime reports, logged with the rollout state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from scripts.pipeline.ensure import ensure_built, refuse_unverified
from scripts.pipeline.layout import Layout
from scripts.rollout import state
from scripts.rollout.gate import Gate
from scripts.runtimes.registry import selected
from scripts.spec import ModelSpec, UserError
from scripts.tasks import task_of


class RolloutRefused(UserError):
    """The gate or the check after the switch refused the version; the old one serves."""


@dataclass
class Outcome:
    runtime: str
    model: str
    action: str  # rolled out / rolled back / refused / already serving
    default: int
    previous: int | None
    switch_s: float = 0.0
    gate: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def running_server(plugin, layout: Layout):
    server = plugin.server.running(layout)
    if server is None:
        raise UserError([f"{plugin.title} is not running; start it with `make serve` first"])
    return server


def servers_of(runtime: str, layout: Layout, servers: dict | None) -> list[tuple]:
    """[(plugin, server)]: the given servers ({runtime name: server}), else `make serve`'s."""
    return [
        (plugin, servers[plugin.name] if servers else running_server(plugin, layout))
        for plugin in selected(runtime)
        if not servers or plugin.name in servers
    ]


def build(plugin, spec: ModelSpec, version: int, layout: Layout) -> None:
    """The version built for this runtime through the one build path (a built version is
    immutable: refused if its inputs changed since), then refused unless it verifies, with
    signing on, as `make serve` does."""
    ensure_built([spec], layout, [plugin], version=version)
    refuse_unverified([plugin], [spec.at_version(version)], layout)


def after_switch_check(plugin, server, spec: ModelSpec, version: int, layout: Layout) -> list[str]:
    """Unversioned requests must now get exactly that version's answers."""
    return task_of(spec).after_switch_problems(plugin, server, spec.at_version(version), layout)


def switch(
    plugin, server, spec: ModelSpec, version: int, keep: int | None, layout: Layout
) -> tuple[float, list[str]]:
    """Make `version` the default; switched back to `keep` when the check after fails."""
    started = time.monotonic()
    plugin.versions.make_default(server, spec, version, keep, layout)
    took = time.monotonic() - started
    problems = after_switch_check(plugin, server, spec, version, layout)
    if problems and keep is not None:
        plugin.versions.make_default(server, spec, keep, version, layout)
        problems.append(f"switched back to version {keep}")
    return took, problems


def drained(
    plugin, server, spec: ModelSpec, version: int, quiet_s: float = 1.0, timeout_s: float = 60
) -> bool:
    """True once the version's finished-request count stays the same for quiet_s."""
    deadline = time.monotonic() + timeout_s
    last = plugin.versions.requests_served(server, spec, version)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = plugin.versions.requests_served(server, spec, version)
        if now == last:
            return True
        last = now
    return False


def retire_others(plugin, server, spec: ModelSpec, keep: set[int], layout: Layout) -> list[str]:
    notes = []
    for version in plugin.versions.versions(server, spec).loaded:
        if version in keep:
            continue
        if drained(plugin, server, spec, version):
            plugin.versions.unload(server, spec, version, layout)
            notes.append(f"retired version {version}")
        else:
            notes.append(f"version {version} still answers requests that name it; left loaded")
    return notes


@dataclass
class Candidate:
    """One runtime's candidate version, loaded beside the serving one and gated."""

    plugin: Any
    server: Any
    serving: int
    loaded_here: bool  # False when the version was loaded already (kept for a rollback)
    gate: Gate

    def outcome(self, spec: ModelSpec, action: str, **fields) -> Outcome:
        return Outcome(
            self.plugin.name,
            spec.name,
            action,
            fields.pop("default", self.serving),
            fields.pop("previous", None),
            gate=self.gate.figures,
            **fields,
        )

    def withdraw(self, spec: ModelSpec, version: int, layout: Layout) -> None:
        if self.loaded_here:
            self.plugin.versions.unload(self.server, spec, version, layout)


def serving_version(plugin, server, spec: ModelSpec) -> int:
    default = plugin.versions.versions(server, spec).default
    if default is None:
        raise UserError(
            [f"{spec.name} is not loaded on {plugin.title}; see `make versions` and its log"]
        )
    return default


def prepare(plugin, server, spec: ModelSpec, version: int, layout: Layout) -> Candidate:
    """Build the version, load it beside the serving one and gate it."""
    serving = serving_version(plugin, server, spec)
    build(plugin, spec, version, layout)
    loaded_here = plugin.versions.load_beside(server, spec, version, layout)
    candidate = Candidate(plugin, server, serving, loaded_here, Gate())
    task = task_of(spec)
    endpoints = task.gate_endpoints(plugin)
    try:
        candidate.gate = task.gate(
            lambda: endpoints(server, spec, serving),
            lambda: endpoints(server, spec, version),
            spec.at_version(serving),
            spec.at_version(version),
            layout,
        )
    except Exception:
        candidate.withdraw(spec, version, layout)
        raise
    return candidate


def logged(layout: Layout, outcome: Outcome) -> Outcome:
    state.log(layout, vars(outcome))
    return outcome
