"""Real servers for the integration tests, started once per session through the runtime
plugins on free loopback ports and always stopped: TorchServe on the project's model_store/,
tritonserver on the project's repository generated into a tmp dir."""

from __future__ import annotations

import pytest

from scripts.runtimes.protocols import BuildOptions, StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton import server as triton_server
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

MODELS = load_spec(REPO / "models.yaml").models


@pytest.fixture(scope="session")
def triton_repo_dir(built_examples, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton_repo")
    RUNTIMES["triton"].artifacts.build(MODELS, LAYOUT, BuildOptions(out=out))
    return out


@pytest.fixture(scope="session")
def triton(triton_repo_dir, tmp_path_factory):
    runtime = RUNTIMES["triton"]
    server = runtime.server.start(
        MODELS,
        LAYOUT,
        StartOptions(
            workdir=tmp_path_factory.mktemp("triton"),
            free_ports=True,
            timeout_s=240,
            artifacts=triton_repo_dir,
            names=triton_server.repository_models(triton_repo_dir),
        ),
    )
    try:
        yield server
    finally:
        runtime.server.stop(server.workdir)


@pytest.fixture(scope="session")
def torchserve(built_examples, tmp_path_factory):
    runtime = RUNTIMES["torchserve"]
    server = runtime.server.start(
        MODELS,
        LAYOUT,
        StartOptions(workdir=tmp_path_factory.mktemp("torchserve"), free_ports=True, timeout_s=240),
    )
    try:
        yield server
    finally:
        runtime.server.stop(server.workdir)
