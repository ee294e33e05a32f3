"""The KServe bundles started as KServe starts them, on this machine without Kubernetes:
TorchServe with KServe's command line on the generated TorchServe tree, tritonserver with
KServe's arguments on the generated (Python-backend) Triton tree; golden answers over v1 and
v2 (TorchServe) and v2 HTTP/gRPC (Triton). What the tests change is named: the mount path
(/mnt/models -> the tree), the ports (free loopback ones) and, for tritonserver, this machine's
backend directory."""

from __future__ import annotations

import pytest

from scripts.kserve.bundle import make_bundles
from scripts.runtimes.registry import RUNTIMES
from tests.conftest import LAYOUT
from tests.integration.kserve.golden import SPECFILE


@pytest.fixture(scope="package")
def bundles(tmp_path_factory):
    """Both trees (Triton: the Python-backend variant, the one that runs here) and the
    manifests, made once for the package's tests (a pod started on a tree starts on a copy)."""
    out = tmp_path_factory.mktemp("kserve")
    settings = SPECFILE.kserve.model_copy(update={"triton_backend": "python"})
    made, manifests = make_bundles(SPECFILE.models, LAYOUT, list(RUNTIMES.values()), settings, out)
    return {b.runtime: b for b in made}, manifests
