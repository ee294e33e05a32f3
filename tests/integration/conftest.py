"""Real servers for the integration tests, started once per session on free loopback ports and
always stopped: TorchServe on the project's model_store/, tritonserver on the project's
repository generated into a tmp dir."""
from __future__ import annotations

import pytest

from scripts import torchserve_server, triton_server
from scripts.serve import TEMPLATE
from scripts.servers import free_port
from scripts.spec import load_spec
from scripts.triton_repo import build_repository
from tests.conftest import REPO


@pytest.fixture(scope="session")
def triton_repo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton_repo")
    build_repository(load_spec(REPO / "models.yaml").models, REPO, out)
    return out


@pytest.fixture(scope="session")
def triton(triton_repo_dir, tmp_path_factory):
    ports = triton_server.Ports(free_port(), free_port(), free_port())
    server = triton_server.start(triton_repo_dir, None, ports, tmp_path_factory.mktemp("triton"))
    try:
        triton_server.wait_ready(server, triton_server.repository_models(triton_repo_dir), timeout_s=240)
        yield server
    finally:
        triton_server.stop(server.workdir)


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory):
    models = [m.name for m in load_spec(REPO / "models.yaml").models]
    ports = torchserve_server.Ports(*(free_port() for _ in range(5)))
    server = torchserve_server.start(REPO / TEMPLATE, REPO / "model_store", models, ports,
                                     tmp_path_factory.mktemp("torchserve"))
    try:
        torchserve_server.wait_ready(server, models, timeout_s=240)
        yield server
    finally:
        torchserve_server.stop(server.workdir)
