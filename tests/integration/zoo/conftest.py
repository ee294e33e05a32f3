"""One real server per runtime for the whole conformance zoo (models/zoo.yaml), on free
loopback ports, started once for this folder's tests and always stopped."""
from __future__ import annotations

import pytest

from scripts.measure.verify_served import endpoints_for
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton import server as triton_server
from tests.conftest import REPO, ZOO_SPEC, build_spec


@pytest.fixture(scope="package")
def zoo_models():
    return build_spec(ZOO_SPEC)


@pytest.fixture(scope="package")
def zoo_servers(zoo_models, tmp_path_factory):
    """{runtime name: server}, both serving every zoo model."""
    repo = tmp_path_factory.mktemp("zoo_triton_repo")
    RUNTIMES["triton"].build(zoo_models, REPO, out=repo)
    servers = {}
    try:
        servers["torchserve"] = RUNTIMES["torchserve"].start(
            zoo_models, REPO, tmp_path_factory.mktemp("zoo_torchserve"), free_ports=True, timeout_s=400)
        servers["triton"] = RUNTIMES["triton"].start(
            zoo_models, REPO, tmp_path_factory.mktemp("zoo_triton"), free_ports=True, timeout_s=400,
            repo=repo, names=triton_server.repository_models(repo))
        yield servers
    finally:
        for name, server in servers.items():
            RUNTIMES[name].stop(server)


@pytest.fixture(scope="package")
def zoo_endpoints(zoo_servers):
    return endpoints_for(zoo_servers)
