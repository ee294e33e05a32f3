"""This project's deployment measured again through the gateway (scripts/gateway/), in the
same run and on the same server: nginx on a free TLS port in front of the bench server with one
probe client, each HTTP target of the deployment called with its key over HTTPS, the
certificate verified. The report sets each point beside the direct one
(comparisons.gateway_overhead)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path

from scripts import gateway
from scripts.measure.bench.deployments import Deployment, DeploymentTargets, gateway_setup_key
from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import Live, Runtime
from scripts.spec import BuildError, ModelSpec


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
    lives = [Live(runtime, deployment.server)]
    with contextlib.ExitStack() as stack:
        try:
            passage = stack.enter_context(gateway.fronting(lives, specs, layout.root, folder))
        except BuildError as failed:
            log(f"gateway not measured: {failed}")
            yield []
            return
        log(f"gateway READY at {passage.url}")
        yield [
            (
                model,
                key_of_setup,
                protocol,
                replace(
                    target,
                    url=passage.url,
                    token=None,
                    headers=(("Authorization", f"Bearer {passage.key}"),),
                    certificate=passage.certificate,
                ),
            )
            for model, setup, protocol, target in deployment.targets
            if setup == runtime.name and protocol == "http"
        ]
