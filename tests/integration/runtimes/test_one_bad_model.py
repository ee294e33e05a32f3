"""One broken model never takes the others down: at start-up each runtime names the model that
failed with its log lines, keeps serving the others, and `make serve` exits non-zero."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import ModelsFailed
from scripts.pipeline.ensure import ensure_built
from scripts.runtimes.protocols import StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.spec import load_spec
from tests.conftest import REPO, TINY_ENTRY, TINY_LM_ENTRY, write_spec, write_tiny_lm

JUNK = b"this is not a model\n"


def junk_in_archive(mar, chosen) -> None:
    """Replace the files of a .mar that `chosen(name)` picks by junk bytes."""
    with zipfile.ZipFile(mar) as source:
        entries = {i.filename: source.read(i) for i in source.infolist()}
    with zipfile.ZipFile(mar, "w") as target:
        for name, data in entries.items():
            target.writestr(name, JUNK if chosen(name) else data)


@pytest.fixture
def good_and_broken(tiny_spec, tmp_path):
    """Two copies of the tiny model; `broken`'s served artifact replaced by junk bytes."""
    shutil.copy(tmp_path / "weights" / "tiny.pt", tmp_path / "weights" / "broken.pt")
    shutil.copy(REPO / "config.properties", tmp_path)  # TorchServe's hardened settings
    path = write_spec(
        tmp_path,
        TINY_ENTRY.format(name="tiny", formats="torchscript, onnx")
        + TINY_ENTRY.format(name="broken", formats="torchscript, onnx"),
    )
    models = load_spec(path).models
    layout = Layout.of(tmp_path)
    ensure_built(models, layout, list(RUNTIMES.values()))
    junk_in_archive(layout.model_store / "broken.mar", lambda name: name.startswith("model."))
    for artifact in (layout.triton_repo / "broken" / "1").glob("model.*"):
        if artifact.suffix != ".py":
            artifact.write_bytes(JUNK)
    return models, layout


def start_with_one_broken(runtime: str, models, layout, tmp_path, broken: str):
    """Start the runtime on these models; it must fail naming `broken` (its log lines too),
    with the tiny model still answering."""
    plugin = RUNTIMES[runtime]
    with pytest.raises(ModelsFailed) as caught:
        plugin.server.start(
            models,
            layout,
            StartOptions(workdir=tmp_path / "server", free_ports=True, timeout_s=120),
        )
    server = caught.value.server
    try:
        assert list(caught.value.failed) == [broken]
        message = str(caught.value)
        assert f"model {broken} failed to load" in message, message
        assert broken in message.split("log lines:")[1], message
        assert server is not None
        rows = {"features": np.zeros((1, 30), np.float32)}
        for call in plugin.endpoints.tensor_endpoints(server).values():
            assert call(models[0], rows)["probability"].shape == (1, 1)  # tiny still serves
    finally:
        if server is not None:
            plugin.server.stop(server.workdir)


@pytest.mark.integration
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_broken_model_is_named_and_the_others_keep_serving(runtime, good_and_broken, tmp_path):
    start_with_one_broken(runtime, *good_and_broken, tmp_path, "broken")


@pytest.fixture
def good_and_broken_generation(tiny_spec, tmp_path):
    """The tiny model beside a generation model whose served weights are junk."""
    shutil.copy(REPO / "config.properties", tmp_path)
    write_tiny_lm(tmp_path)
    entries = TINY_ENTRY.format(name="tiny", formats="torchscript, onnx") + TINY_LM_ENTRY
    models = load_spec(write_spec(tmp_path, entries)).models
    layout = Layout.of(tmp_path)
    ensure_built(models, layout, list(RUNTIMES.values()))
    junk_in_archive(layout.model_store / "own_lm.mar", lambda n: n.endswith("model.safetensors"))
    (layout.triton_repo / "own_lm" / "1" / "pretrained" / "model.safetensors").write_bytes(JUNK)
    return models, layout


@pytest.mark.integration
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_broken_generation_model_is_named_and_the_others_keep_serving(
    runtime, good_and_broken_generation, tmp_path
):
    start_with_one_broken(runtime, *good_and_broken_generation, tmp_path, "own_lm")
