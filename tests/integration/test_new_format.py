"""A format added as one module and one registry line (handlers/formats/torchscript_frozen.py),
served by both runtimes and verified as every model is: a small classifier exported only as
frozen TorchScript, built through the one build path, served by TorchServe and Triton on free
ports, and checked by `make verify`'s checks (golden samples through every tensor endpoint)."""

from __future__ import annotations

import torch
import pytest

from models.tabular import TabularMLP
from scripts.measure.verification import verify_models
from scripts.measure.verify_served import endpoints_for
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.spec import load_spec
from tests.conftest import TINY_ENTRY, write_spec

pytestmark = pytest.mark.integration

SERVED_FROZEN = "    serving: {format: torchscript_frozen}\n"


def test_a_frozen_torchscript_model_is_served_and_verified_on_both_runtimes(tmp_path):
    torch.manual_seed(0)
    (tmp_path / "weights").mkdir()
    torch.save(TabularMLP(30, 16).state_dict(), tmp_path / "weights" / "frozen.pt")
    (tmp_path / "labels.txt").write_text("malignant\nbenign\n")
    entry = TINY_ENTRY.format(name="frozen", formats="torchscript_frozen") + SERVED_FROZEN
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    layout, servers = Layout.of(tmp_path), {}
    try:
        for name, runtime in RUNTIMES.items():
            ensure_built([spec], layout, [runtime])
            servers[name] = runtime.server.start(
                [spec],
                layout,
                StartOptions(workdir=tmp_path / name, free_ports=True, timeout_s=240, managed=True),
            )
        checks = verify_models([spec], layout, endpoints_for(servers))
    finally:
        for name, server in servers.items():
            RUNTIMES[name].server.stop(server.workdir)
    assert checks and all(c.passed for c in checks), checks
    assert set(RUNTIMES) <= {c.endpoint.split("-")[0] for c in checks}  # both runtimes answered
