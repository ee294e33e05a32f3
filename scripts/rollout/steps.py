"""One runtime's steps of a rollout (scripts/rollout/flow.py decides across runtimes): find its
running server, build a version, load it beside the serving one and gate it (a Candidate),
switch the default and check unversioned requests get it, retire versions once they have
drained; and the Outcome each runtime reports, logged with the rollout state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from scripts.pipeline.ensure import ensure_built, refuse_unverified
from scripts.pipeline.layout import Layout
from scripts.rollout import state
from scripts.rollout.gate import Gate
from scripts.runtimes.protocols import Live, Runtime, Server
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


def running_server(plugin: Runtime, layout: Layout) -> Live:
    server = plugin.server.running(layout)
    if server is None:
        raise UserError([f"{plugin.title} is not running; start it with `make serve` first"])
    return plugin.attach(server)


def servers_of(runtime: str, layout: Layout, servers: Mapping[str, Server] | None) -> list[Live]:
    """The selected runtimes bound to the given servers ({runtime name: server}), else to
    `make serve`'s."""
    return [
        plugin.attach(servers[plugin.name]) if servers else running_server(plugin, layout)
        for plugin in selected(runtime)
        if not servers or plugin.name in servers
    ]


def build(plugin: Runtime, spec: ModelSpec, version: int, layout: Layout) -> None:
    """The version built for this runtime through the one build path (a built version is
    immutable: refused if its inputs changed since), then refused unless it verifies, with
    signing on, as `make serve` does."""
    ensure_built([spec], layout, [plugin], version=version)
    refuse_unverified([plugin], [spec.at_version(version)], layout)


def after_switch_check(live: Live, spec: ModelSpec, version: int, layout: Layout) -> list[str]:
    """Unversioned requests must now get exactly that version's answers."""
    return task_of(spec).after_switch_problems(live, spec.at_version(version), layout)


def switch(
    live: Live, spec: ModelSpec, version: int, keep: int | None, layout: Layout
) -> tuple[float, list[str]]:
    """Make `version` the default; switched back to `keep` when the check after fails."""
    started = time.monotonic()
    live.make_default(spec, version, keep, layout)
    took = time.monotonic() - started
    problems = after_switch_check(live, spec, version, layout)
    if problems and keep is not None:
        live.make_default(spec, keep, version, layout)
        problems.append(f"switched back to version {keep}")
    return took, problems


def drained(
    live: Live, spec: ModelSpec, version: int, quiet_s: float = 1.0, timeout_s: float = 60
) -> bool:
    """True once the version's finished-request count stays the same for quiet_s."""
    deadline = time.monotonic() + timeout_s
    last = live.requests_served(spec, version)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = live.requests_served(spec, version)
        if now == last:
            return True
        last = now
    return False


def retire_others(live: Live, spec: ModelSpec, keep: set[int], layout: Layout) -> list[str]:
    notes: list[str] = []
    for version in live.versions(spec).loaded:
        if version in keep:
            continue
        if drained(live, spec, version):
            live.unload(spec, version, layout)
            notes.append(f"retired version {version}")
        else:
            notes.append(f"version {version} still answers requests that name it; left loaded")
    return notes


@dataclass
class Candidate:
    """One runtime's candidate version, loaded beside the serving one and gated."""

    live: Live
    serving: int
    loaded_here: bool  # False when the version was loaded already (kept for a rollback)
    gate: Gate

    def outcome(self, spec: ModelSpec, action: str, **fields) -> Outcome:
        return Outcome(
            self.live.name,
            spec.name,
            action,
            fields.pop("default", self.serving),
            fields.pop("previous", None),
            gate=self.gate.figures,
            **fields,
        )

    def withdraw(self, spec: ModelSpec, version: int, layout: Layout) -> None:
        if self.loaded_here:
            self.live.unload(spec, version, layout)


def serving_version(live: Live, spec: ModelSpec) -> int:
    default = live.versions(spec).default
    if default is None:
        raise UserError(
            [f"{spec.name} is not loaded on {live.title}; see `make versions` and its log"]
        )
    return default


def prepare(live: Live, spec: ModelSpec, version: int, layout: Layout) -> Candidate:
    """Build the version, load it beside the serving one and gate it."""
    serving = serving_version(live, spec)
    build(live.runtime, spec, version, layout)
    loaded_here = live.load_beside(spec, version, layout)
    candidate = Candidate(live, serving, loaded_here, Gate())
    task = task_of(spec)
    endpoints = task.gate_endpoints(live)
    try:
        candidate.gate = task.gate(
            lambda: endpoints(spec, serving),
            lambda: endpoints(spec, version),
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
