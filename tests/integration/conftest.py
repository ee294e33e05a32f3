"""Fixtures for the Triton integration tests: the project's repository generated into a tmp dir
and a real tritonserver on free loopback ports, always stopped afterwards."""
from __future__ import annotations

import pytest

from scripts import triton_server
from scripts.servers import free_port
from scripts.spec import load_spec
from scripts.triton_repo import build_repository
from tests.conftest import REPO


@pytest.fixture(scope="session")
def triton_repo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton_repo")
    build_repository(load_spec(REPO / "models.yaml").models, REPO, out)
    return out


@pytest.fixture(scope="module")
def triton(triton_repo_dir, tmp_path_factory):
    ports = triton_server.Ports(free_port(), free_port(), free_port())
    server = triton_server.start(triton_repo_dir, None, ports, tmp_path_factory.mktemp("triton"))
    try:
        triton_server.wait_ready(server, triton_server.repository_models(triton_repo_dir), timeout_s=240)
        yield server
    finally:
        triton_server.stop(server.workdir)
