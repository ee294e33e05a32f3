"""This project's deployment measured again through the gateway (scripts/gateway/), in the
same run and on the same server: nginx on a free TLS port in front of the bench server, one
bench client allowed every model (and the statistics API perf_analyzer reads), each HTTP target
of the deployment called with the client's key over HTTPS, its certificate verified. The report
sets each point beside the direct one (comparisons.gateway_overhead)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path

from scripts import gateway
from scripts.measure.bench.deployments import Deployment, DeploymentTargets, gateway_setup_key
from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import free_port
from scripts.runtimes.protocols import Live, Runtime
from scripts.spec import BuildError, ModelSpec
from scripts.spec.access import AccessSpec

BENCH_CLIENT = "bench"


def bench_access(key: str) -> AccessSpec:
    """One client, every model, the admin APIs (perf_analyzer reads Triton's statistics), no
    limits: what the gateway costs, not what a policy refuses."""
    client = {
        "name": BENCH_CLIENT,
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "admin": True,
    }
    return AccessSpec.model_validate({"port": free_port(), "clients": [client]})


@contextlib.contextmanager
def through_gateway(
    runtime: Runtime,
    deployment: Deployment,
    specs: list[ModelSpec],
    layout: Layout,
    folder: Path,
    log: Callable[[str], None],
) -> Generator[DeploymentTargets]:
    """The deployment's own HTTP targets (not the stock setup's) through a gateway started in
    front of its server; none for a runtime without a gateway setup, or when the gateway cannot
    start here (said in the log)."""
    key_of_setup = gateway_setup_key(runtime.name)
    if runtime.bench is None or key_of_setup not in {s.key for s in runtime.bench.setups}:
        yield []
        return
    key = secrets.token_urlsafe(24)
    try:
        started = gateway.start(
            bench_access(key), layout.root, folder, [Live(runtime, deployment.server)], specs
        )
    except BuildError as failed:
        log(f"gateway not measured: {failed}")
        yield []
        return
    log(f"gateway READY at {started.url}")
    authorization = (("Authorization", f"Bearer {key}"),)
    try:
        yield [
            (
                model,
                key_of_setup,
                protocol,
                replace(
                    target,
                    url=started.url,
                    token=None,
                    headers=authorization,
                    certificate=started.certificate,
                ),
            )
            for model, setup, protocol, target in deployment.targets
            if setup == runtime.name and protocol == "http"
        ]
    finally:
        gateway.stop(folder)
