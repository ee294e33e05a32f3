"""`make rollout`, `make rollback`, `make versions` and `make serve`'s restore, over the runtime
plugins and the servers `make serve` started. A rollout is:

  on every runtime: build the version -> load it beside the serving one -> gate;
  then, only if every gate passed, on every runtime: switch the default -> check an
  unversioned request gets the new version (else switch all back); then retire versions other
  than the new default and the one kept for a rollback, once they have drained.

Each step on one runtime is in steps.py; this module decides across the runtimes.
"""

from __future__ import annotations

from collections.abc import Mapping

from scripts.pipeline.layout import Layout
from scripts.rollout import state
from scripts.rollout.steps import (
    Candidate,
    Outcome,
    RolloutRefused,
    build,
    logged,
    prepare,
    retire_others,
    servers_of,
    serving_version,
    switch,
)
from scripts.runtimes.protocols import Server
from scripts.spec import ModelSpec, UserError


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
    spec: ModelSpec,
    version: int,
    runtime: str,
    layout: Layout,
    servers: Mapping[str, Server] | None = None,
) -> list[Outcome]:
    """Gate the version on every runtime first; switch only when it passed on all of them, and
    switch all back when the check after a switch fails on one."""
    spec.at_version(version)  # an unknown version is refused before anything runs
    targets = servers_of(runtime, layout, servers)
    problems = [p for live in targets for p in live.rollout_problems(spec)]
    if problems:
        raise UserError(problems)
    candidates, outcomes = [], []
    try:
        for live in targets:
            if serving_version(live, spec) == version:
                outcomes.append(Outcome(live.name, spec.name, "already serving", version, None))
            else:
                candidates.append(prepare(live, spec, version, layout))
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
            [f"{c.live.name}: {p}" for c in refused for p in c.gate.problems],
        )
    switched = []
    for candidate in candidates:
        took, problems = switch(candidate.live, spec, version, candidate.serving, layout)
        if problems:
            for earlier, _ in switched:
                earlier.live.make_default(spec, earlier.serving, version, layout)
            failed = candidate.outcome(spec, "refused", switch_s=took, problems=problems)
            refuse(
                spec,
                version,
                layout,
                candidates,
                [failed],
                [f"{candidate.live.name}: {p}" for p in problems]
                + [
                    f"{earlier.live.name}: switched back to version {earlier.serving}"
                    for earlier, _ in switched
                ],
            )
        switched.append((candidate, took))
    for candidate, took in switched:
        state.record(
            layout,
            candidate.live.name,
            spec.name,
            version,
            candidate.serving,
            candidate.gate.figures,
        )
    for candidate, took in switched:
        notes = retire_others(candidate.live, spec, {version, candidate.serving}, layout)
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
    spec: ModelSpec, runtime: str, layout: Layout, servers: Mapping[str, Server] | None = None
) -> list[Outcome]:
    """Back to the version served before the last rollout, on every runtime (each checked first)."""
    targets = []
    for live in servers_of(runtime, layout, servers):
        current = serving_version(live, spec)
        previous = state.served(layout, live.name, spec.name).get("previous")
        if previous is None or previous == current:
            raise UserError(
                [
                    f"{spec.name} on {live.title}: no previous version to roll back to "
                    f"(serving version {current}; see `make versions`)"
                ]
            )
        targets.append((live, current, previous))
    outcomes = []
    for live, current, previous in targets:
        took, problems = switch(live, spec, previous, current, layout)
        if not problems:
            state.record(layout, live.name, spec.name, previous, current, None)
        outcomes.append(
            logged(
                layout,
                Outcome(
                    live.name,
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


def restore(
    runtime: str,
    models: list[ModelSpec],
    layout: Layout,
    servers: Mapping[str, Server] | None = None,
) -> list[str]:
    """After `make serve` started the runtime(s) on the spec's versions: bring each model back on
    the version last rolled out (with the one before it loaded for a rollback)."""
    lines: list[str] = []
    for live, spec in ((live, m) for live in servers_of(runtime, layout, servers) for m in models):
        served = state.served(layout, live.name, spec.name)
        if (
            not served
            or served["default"] == spec.version
            or served["default"] not in spec.version_numbers
        ):
            continue
        build(live.runtime, spec, served["default"], layout)
        keep = served.get("previous")
        if keep is not None and keep != served["default"]:
            build(live.runtime, spec, keep, layout)
        live.make_default(spec, served["default"], keep, layout)
        lines.append(
            f"{live.title}: {spec.name} serves version {served['default']}, as last rolled out "
            "(`make versions`)"
        )
    return lines
