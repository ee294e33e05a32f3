"""`make rollout`, `make rollback`, `make versions` and `make serve`'s restore, over the runtime
plugins and the servers `make serve` started. A rollout is:

  on every runtime: build the version -> load it beside the serving one -> gate;
  then, only if every gate passed, on every runtime: switch the default -> check an
  unversioned request gets the new version (else switch all back); then retire versions other
  than the new default and the one kept for a rollback, once they have drained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from scripts.pipeline.layout import Layout
from scripts.pipeline.ensure import ensure_built, refuse_unverified
from scripts.rollout import state
from scripts.rollout.gate import Gate, golden_check, run_gate
from scripts.runtimes.registry import selected
from scripts.spec import ModelSpec, UserError


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


def build(plugin, spec: ModelSpec, version: int, layout: Layout) -> None:
    """The version built for this runtime through the one build path (a built version is
    immutable: refused if its inputs changed since), then refused unless it verifies, with
    signing on, as `make serve` does."""
    ensure_built([spec], layout, [plugin], version=version)
    refuse_unverified([plugin], [spec.at_version(version)], layout)


def after_switch_check(plugin, server, spec: ModelSpec, version: int, layout: Layout) -> list[str]:
    """Unversioned requests must now get exactly that version's golden outputs."""
    gate = Gate()
    golden_check(plugin.endpoints.tensor_endpoints(server), spec.at_version(version), layout, gate)
    return [
        p.replace(f"version {version} golden samples", "unversioned requests after the switch")
        for p in gate.problems
    ]


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
    try:
        candidate.gate = run_gate(
            lambda: plugin.endpoints.version_endpoints(server, spec, serving),
            lambda: plugin.endpoints.version_endpoints(server, spec, version),
            spec.at_version(serving),
            spec.at_version(version),
            layout,
        )
    except Exception:
        candidate.withdraw(spec, version, layout)
        raise
    return candidate


def refuse(
    spec: ModelSpec,
    version: int,
    layout: Layout,
    candidates: list[Candidate],
    outcomes: list[Outcome],
    problems: list[str],
) -> None:
    for candidate in candidates:
        candidate.withdraw(spec, version, layout)
    for outcome in outcomes:
        logged(layout, outcome)
    raise RolloutRefused(
        [
            f"{spec.name} version {version} refused; every runtime serves what it served before:",
            *problems,
        ]
    )


def rollout(
    spec: ModelSpec, version: int, runtime: str, layout: Layout, servers: dict | None = None
) -> list[Outcome]:
    """Gate the version on every runtime first; switch only when it passed on all of them, and
    switch all back when the check after a switch fails on one."""
    spec.at_version(version)  # an unknown version is refused before anything runs
    targets = servers_of(runtime, layout, servers)
    problems = [
        p for plugin, server in targets for p in plugin.versions.rollout_problems(server, spec)
    ]
    if problems:
        raise UserError(problems)
    candidates, outcomes = [], []
    try:
        for plugin, server in targets:
            if serving_version(plugin, server, spec) == version:
                outcomes.append(Outcome(plugin.name, spec.name, "already serving", version, None))
            else:
                candidates.append(prepare(plugin, server, spec, version, layout))
    except (
        Exception
    ):  # e.g. the version cannot be built for the next runtime: withdraw it everywhere
        for candidate in candidates:
            candidate.withdraw(spec, version, layout)
        raise
    refused = [c for c in candidates if not c.gate.passed]
    if refused:
        refuse(
            spec,
            version,
            layout,
            candidates,
            [c.outcome(spec, "refused", problems=c.gate.problems) for c in refused],
            [f"{c.plugin.name}: {p}" for c in refused for p in c.gate.problems],
        )
    switched = []
    for candidate in candidates:
        took, problems = switch(
            candidate.plugin, candidate.server, spec, version, candidate.serving, layout
        )
        if problems:
            for earlier, _ in switched:
                earlier.plugin.versions.make_default(
                    earlier.server, spec, earlier.serving, version, layout
                )
            failed = candidate.outcome(spec, "refused", switch_s=took, problems=problems)
            refuse(
                spec,
                version,
                layout,
                candidates,
                [failed],
                [f"{candidate.plugin.name}: {p}" for p in problems]
                + [
                    f"{earlier.plugin.name}: switched back to version {earlier.serving}"
                    for earlier, _ in switched
                ],
            )
        switched.append((candidate, took))
    for candidate, took in switched:
        state.record(
            layout,
            candidate.plugin.name,
            spec.name,
            version,
            candidate.serving,
            candidate.gate.figures,
        )
    for candidate, took in switched:
        notes = retire_others(
            candidate.plugin, candidate.server, spec, {version, candidate.serving}, layout
        )
        outcomes.append(
            logged(
                layout,
                candidate.outcome(
                    spec,
                    "rolled out",
                    default=version,
                    previous=candidate.serving,
                    switch_s=took,
                    problems=notes,
                ),
            )
        )
    return outcomes


def rollback(
    spec: ModelSpec, runtime: str, layout: Layout, servers: dict | None = None
) -> list[Outcome]:
    """Back to the version served before the last rollout, on every runtime (each checked first)."""
    targets = []
    for plugin, server in servers_of(runtime, layout, servers):
        current = serving_version(plugin, server, spec)
        previous = state.served(layout, plugin.name, spec.name).get("previous")
        if previous is None or previous == current:
            raise UserError(
                [
                    f"{spec.name} on {plugin.title}: no previous version to roll back to "
                    f"(serving version {current}; see `make versions`)"
                ]
            )
        targets.append((plugin, server, current, previous))
    outcomes = []
    for plugin, server, current, previous in targets:
        took, problems = switch(plugin, server, spec, previous, current, layout)
        if not problems:
            state.record(layout, plugin.name, spec.name, previous, current, None)
        outcomes.append(
            logged(
                layout,
                Outcome(
                    plugin.name,
                    spec.name,
                    "refused" if problems else "rolled back",
                    current if problems else previous,
                    current,
                    took,
                    problems=problems,
                ),
            )
        )
    failed = [f"{o.runtime}: {p}" for o in outcomes if o.action == "refused" for p in o.problems]
    if failed:
        raise RolloutRefused(
            [
                f"{spec.name}: rollback refused where the check after the switch failed:",
                *failed,
                *(
                    f"{o.runtime}: rolled back to version {o.default}"
                    for o in outcomes
                    if o.action == "rolled back"
                ),
            ]
        )
    return outcomes


def logged(layout: Layout, outcome: Outcome) -> Outcome:
    state.log(layout, vars(outcome))
    return outcome


def servers_of(runtime: str, layout: Layout, servers: dict | None) -> list[tuple]:
    """[(plugin, server)]: the given servers ({runtime name: server}), else `make serve`'s."""
    return [
        (plugin, servers[plugin.name] if servers else running_server(plugin, layout))
        for plugin in selected(runtime)
        if not servers or plugin.name in servers
    ]


def restore(
    runtime: str, models: list[ModelSpec], layout: Layout, servers: dict | None = None
) -> list[str]:
    """After `make serve` started the runtime(s) on the spec's versions: bring each model back on
    the version last rolled out (with the one before it loaded for a rollback)."""
    lines = []
    for (plugin, server), spec in (
        (ps, m) for ps in servers_of(runtime, layout, servers) for m in models
    ):
        served = state.served(layout, plugin.name, spec.name)
        if (
            not served
            or served["default"] == spec.version
            or served["default"] not in spec.version_numbers
        ):
            continue
        build(plugin, spec, served["default"], layout)
        keep = served.get("previous")
        if keep is not None and keep != served["default"]:
            build(plugin, spec, keep, layout)
        plugin.versions.make_default(server, spec, served["default"], keep, layout)
        lines.append(
            f"{plugin.title}: {spec.name} serves version {served['default']}, as last rolled out (`make versions`)"
        )
    return lines
