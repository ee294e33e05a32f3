"""The export formats' registry (handlers/formats/): the spec accepts exactly its names, and a
format added through it (torchscript_frozen: one module and one registry line) is exported,
loaded, verified against eager and packaged for both runtimes like the others."""

from __future__ import annotations

import os
import zipfile
from typing import get_args

import numpy as np
import pytest
import torch
from torch import nn

from handlers.encryption import KEY_ENV, encrypt_file, master_key
from handlers.formats import FORMATS, format_of
from handlers.formats.base import Exportable
from handlers.plan import Format
from handlers.runners import load_runner, torch_runner
from scripts.pipeline.export import export_model
from scripts.pipeline.layout import Layout
from scripts.runtimes.torchserve.archive import archive_model
from scripts.runtimes.triton.configs import read_config
from scripts.runtimes.triton.repository import build_repository
from scripts.spec import load_spec
from scripts.spec.sections import Export

FROZEN = FORMATS["torchscript_frozen"]


def test_the_spec_accepts_exactly_the_registry_names():
    assert list(get_args(Format)) == list(FORMATS)
    for name in FORMATS:
        assert Export(formats=[name]).wanted == [name]
    with pytest.raises(ValueError, match="'torchscript_frozen'"):  # the refusal lists them
        Export(formats=["frozen"])
    with pytest.raises(ValueError, match=r"unknown model format 'frozen'; expected one of \["):
        format_of("frozen")


def test_each_format_has_its_own_file_and_names_a_registered_source():
    # but pretrained_int8, quantised at load from the fp32 folder it shares
    at_load = [
        f for f in FORMATS.values() if f.quantized_from and FORMATS[f.quantized_from].file == f.file
    ]
    assert [f.name for f in at_load] == ["pretrained_int8"]
    files = [f.file for f in FORMATS.values() if f not in at_load]
    assert len(set(files)) == len(files)
    assert all(f.quantized_from in (None, *FORMATS) for f in FORMATS.values())
    auto = ["torchscript", "onnx", "aoti", "exported_program"]  # torchscript_frozen: by name
    assert [f.name for f in FORMATS.values() if f.auto] == auto


class ConvBn(nn.Module):
    """What freezing and optimize_for_inference rewrite: BatchNorm folded into the convolution,
    the convolution run by MKLDNN."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(image))).flatten(1))


@pytest.fixture
def frozen_file(tmp_path):
    torch.manual_seed(0)
    model = ConvBn().eval()
    with torch.no_grad():  # statistics that are not the identity, so folding them matters
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    path = tmp_path / FROZEN.file
    example = (torch.randn(2, 1, 8, 8),)
    FROZEN.export(Exportable(model, example, ["image"], ["logits"], [[0]], [[0]]), path)
    return model, path


def images(batch: int) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(batch).standard_normal((batch, 1, 8, 8), np.float32)}


def test_torchscript_frozen_exports_a_model_that_load_runner_runs_as_eager(frozen_file):
    model, path = frozen_file
    saved = torch.jit.load(str(path))
    assert list(saved.parameters()) == []  # frozen: the weights are constants of the graph
    assert "batch_norm" not in str(saved.graph)  # folded into the convolution
    run = load_runner(FROZEN.name, path, ["image"], output_names=["logits"])
    eager = torch_runner(model, ["image"], ["logits"])
    for batch in (1, 3, 8):
        np.testing.assert_allclose(run(images(batch))[0], eager(images(batch))[0], atol=1e-5)


def test_an_encrypted_frozen_file_loads_in_memory(frozen_file, tmp_path, monkeypatch):
    _, path = frozen_file
    plain = load_runner(FROZEN.name, path, ["image"])(images(3))[0]
    key = tmp_path / "weights.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    monkeypatch.setenv(KEY_ENV, str(key))
    assert FROZEN.encryptable and encrypt_file(path, master_key(), "frozen", 1)
    sealed = load_runner(FROZEN.name, path, ["image"], owner=("frozen", 1))
    np.testing.assert_array_equal(sealed(images(3))[0], plain)


def test_the_build_verifies_torchscript_frozen_and_both_runtimes_package_it(tiny_spec, tmp_path):
    """Listed first, it is served; the Triton pytorch backend gets it as model.pt with the very
    config.pbtxt torchscript gets (checked offline by loading and running it), and the .mar's
    handler loads it from the handlers/formats/ package shipped inside."""
    text = tiny_spec.read_text()
    tiny_spec.write_text(text.replace("[torchscript, onnx]", "[torchscript_frozen, torchscript]"))
    spec, layout = load_spec(tiny_spec).models[0], Layout.of(tiny_spec.parent)
    assert spec.serving.format == FROZEN.name
    report = export_model(spec, layout).report
    assert report["passed"] and {(r["format"], r["batch_size"]) for r in report["results"]} == {
        (f, b) for f in (FROZEN.name, "torchscript") for b in (1, 3, 8)
    }
    scripted = spec.model_copy(
        update={"serving": spec.serving.model_copy(update={"format": "torchscript"})}
    )
    configs = {}
    for served in (spec, scripted):
        repo = tmp_path / f"repo_{served.serving.format}"
        build_repository([served], layout, repo, "pytorch")
        shipped = (repo / "tiny" / "1" / "model.pt").read_bytes()
        exported = layout.artifact_dir(spec) / format_of(served.serving.format).file
        assert shipped == exported.read_bytes()
        configs[served.serving.format] = str(read_config(repo / "tiny" / "config.pbtxt"))
    assert configs[FROZEN.name] == configs["torchscript"]
    archive_model(spec, layout, tmp_path / "store")  # loads it through the handler, or fails
    with zipfile.ZipFile(tmp_path / "store" / "tiny.mar") as mar:
        assert {"handlers/formats/torchscript_frozen.py", FROZEN.file} <= set(mar.namelist())
