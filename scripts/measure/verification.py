"""`make verify`: every model of the spec against what its task kind checks (scripts/tasks),
through the endpoints of the runtimes serving it, each at the version it serves now."""

from __future__ import annotations

from collections.abc import Mapping

from scripts.measure.verify_served import Check, Endpoints, endpoints_for
from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import GatewayPass, Server
from scripts.runtimes.registry import attached
from scripts.spec import ModelSpec
from scripts.tasks import task_of


def verify_served_versions(
    models: list[ModelSpec],
    layout: Layout,
    servers: Mapping[str, Server],
    passage: GatewayPass | None = None,
) -> list[Check]:
    """verify_models, each model checked against the version each runtime serves now (after
    `make rollout` that is not always the spec's first version); with `passage`, through the
    gateway too."""
    checks: list[Check] = []
    for spec in models:
        by_version: dict[int, dict[str, Server]] = {}
        for live in attached(servers):
            version = live.versions(spec).default if spec.versions else spec.version
            by_version.setdefault(version or spec.version, {})[live.name] = live.server
        for version, group in sorted(by_version.items()):
            endpoints = endpoints_for(group, passage)
            found = verify_models([spec.at_version(version)], layout, endpoints)
            for check in found if spec.versions else []:
                check.model = f"{spec.name} v{version}"  # which version each runtime serves
            checks += found
    return checks


def verify_models(models: list[ModelSpec], layout: Layout, endpoints: Endpoints) -> list[Check]:
    checks = []
    for spec in models:
        checks += task_of(spec).verify(spec, layout, endpoints)
    return checks
