"""`make drill`: a rollout and a rollback under steady load, on every running runtime, with every
answer checked (scripts/measure/traffic.py). The report gives per runtime and phase the
requests, failures, which version answered, and p50/p99; plus each switch's duration.

Clients per runtime and protocol: unversioned ones, and ones that name the serving version
(which stays loaded throughout, on both runtimes)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from scripts.pipeline.layout import Layout
from scripts.measure.traffic import summary
from scripts.rollout.flow import build, rollback, rollout
from scripts.rollout.steps import serving_version
from scripts.runtimes.protocols import GatewayPass, Server
from scripts.runtimes.registry import attached
from scripts.spec import ModelSpec, UserError
from scripts.tasks import task_of

PHASES = ("before", "rollout", "after rollout", "rollback", "after rollback")


def drill(
    spec: ModelSpec,
    version: int,
    servers: Mapping[str, Server],
    layout: Layout,
    per_endpoint: int = 4,
    settle_s: float = 2.0,
    passage: GatewayPass | None = None,
) -> dict:
    """Roll `version` out and back under load; returns the report (also
    reports/drill_<model>.json). With `passage`, clients also go through the gateway."""
    lives = attached(servers)
    serving = {live.name: serving_version(live, spec) for live in lives}
    if any(version <= v for v in serving.values()):
        raise UserError(
            [
                f"drill rolls out a version above the serving one ({serving}); "
                f"`make rollback MODEL={spec.name}` first, or pick a higher VERSION"
            ]
        )
    for live in lives:  # built before the load starts: training is not what is measured
        build(live.runtime, spec, version, layout)
    task = task_of(spec)
    inputs, expected = task.expected_outputs(spec, sorted({*serving.values(), version}), layout)
    clients = task.clients(servers, spec, per_endpoint, min(serving.values()), passage)
    marks = []
    with task.traffic(spec, clients, expected, inputs) as traffic:
        traffic.warm()
        marks.append(time.monotonic())
        time.sleep(settle_s)
        marks.append(time.monotonic())
        out = rollout(spec, version, "all", layout, servers)
        marks.append(time.monotonic())
        time.sleep(settle_s)
        marks.append(time.monotonic())
        back = rollback(spec, "all", layout, servers)
        marks.append(time.monotonic())
        time.sleep(settle_s)
        marks.append(time.monotonic())
    report = {
        "model": spec.name,
        "serving": serving,
        "version": version,
        "clients": len(clients),
        "client_kinds": sorted({c.name for c in clients}),
        "switch_s": {o.runtime: {"rollout": o.switch_s} for o in out},
        "phases": {
            phase: {
                name: summary([a for a in traffic.answers if a.runtime == name], start, end)
                for name in servers
            }
            for phase, start, end in zip(PHASES, marks, marks[1:])
        },
        "total": {
            name: summary([a for a in traffic.answers if a.runtime == name]) for name in servers
        },
    }
    for o in back:
        report["switch_s"][o.runtime]["rollback"] = o.switch_s
    report["answers"], report["marks"] = (
        traffic.answers,
        marks,
    )  # for tests: every answer, phase starts
    out_file = layout.reports / f"drill_{spec.name}.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(
        json.dumps({k: v for k, v in report.items() if k not in ("answers", "marks")}, indent=2)
        + "\n"
    )
    return report
