"""Real servers for the integration tests, started once per session through the runtime
plugins on free loopback ports and always stopped: TorchServe on the project's model_store/,
tritonserver on the project's repository generated into a tmp dir."""
from __future__ import annotations

import pytest

from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton import server as triton_server
from scripts.spec import load_spec
from tests.conftest import REPO

MODELS = load_spec(REPO / "models.yaml").models


@pytest.fixture(scope="session")
def triton_repo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton_repo")
    RUNTIMES["triton"].build(MODELS, REPO, out=out)
    return out


@pytest.fixture(scope="session")
def triton(triton_repo_dir, tmp_path_factory):
    plugin = RUNTIMES["triton"]
    server = plugin.start(MODELS, REPO, tmp_path_factory.mktemp("triton"), free_ports=True, timeout_s=240,
                          repo=triton_repo_dir, names=triton_server.repository_models(triton_repo_dir))
    try:
        yield server
    finally:
        plugin.stop(server)


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory):
    plugin = RUNTIMES["torchserve"]
    server = plugin.start(MODELS, REPO, tmp_path_factory.mktemp("torchserve"), free_ports=True, timeout_s=240)
    try:
        yield server
    finally:
        plugin.stop(server)
