"""One real server per runtime for the whole conformance zoo (models/zoo.yaml), on free
loopback ports, started once for this folder's tests and always stopped."""

from __future__ import annotations

import pytest

from scripts.measure.verify_served import endpoints_for
from scripts.runtimes.protocols import BuildOptions, StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton import server as triton_server
from tests.conftest import LAYOUT, ZOO_SPEC, build_spec


@pytest.fixture(scope="package")
def zoo_models():
    return build_spec(ZOO_SPEC)


@pytest.fixture(scope="package")
def zoo_servers(zoo_models, tmp_path_factory):
    """{runtime name: server}, both serving every zoo model."""
    repo = tmp_path_factory.mktemp("zoo_triton_repo")
    RUNTIMES["triton"].artifacts.build(zoo_models, LAYOUT, BuildOptions(out=repo))
    artifacts = {"triton": repo}
    servers = {}
    try:
        for name, runtime in RUNTIMES.items():
            where = artifacts.get(name)
            servers[name] = runtime.server.start(
                zoo_models,
                LAYOUT,
                StartOptions(
                    workdir=tmp_path_factory.mktemp(f"zoo_{name}"),
                    free_ports=True,
                    timeout_s=400,
                    artifacts=where,
                    names=where and triton_server.repository_models(where),
                ),
            )
        yield servers
    finally:
        for name, server in servers.items():
            RUNTIMES[name].server.stop(server.workdir)


@pytest.fixture(scope="package")
def zoo_endpoints(zoo_servers):
    return endpoints_for(zoo_servers)
