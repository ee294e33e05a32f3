"""With an encryption key set, no plaintext weights outlive a failed build: a failed export,
verification or accuracy gate, or a failed encryption, removes them; a bad key is refused before
anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import scripts.pipeline.export as export
from handlers.encryption import KEY_ENV, MAGIC
from scripts.pipeline.export import export_model
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, load_spec
from tests.conftest import write_spec
from tests.unit.pipeline.test_quantize import OUTLIER


def set_key(folder: Path, monkeypatch, mode: int = 0o600) -> Path:
    path = folder / "weights.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(mode)
    monkeypatch.setenv(KEY_ENV, str(path))
    return path


def weight_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("model.*")) if out.exists() else []


@pytest.fixture
def outlier(tmp_path):
    from models.zoo.quantization import OutlierLinear

    torch.manual_seed(0)
    torch.save(OutlierLinear().state_dict(), tmp_path / "outlier.pt")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    return load_spec(write_spec(tmp_path, OUTLIER)).models[0]


def test_a_failed_gate_leaves_no_plaintext_weights(outlier, tmp_path, monkeypatch):
    set_key(tmp_path, monkeypatch)
    with pytest.raises(BuildError, match="onnx_int8 fails its accuracy gate"):
        export_model(outlier, Layout.of(tmp_path))
    assert not Layout.of(tmp_path).artifact_dir(outlier).exists()


def test_without_a_key_a_failed_gate_keeps_the_verified_export(outlier, tmp_path, monkeypatch):
    """Nothing is secret then: the fp32 export stays for inspection (pinned as it is)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BuildError, match="fails its accuracy gate"):
        export_model(outlier, Layout.of(tmp_path))
    assert weight_files(Layout.of(tmp_path).artifact_dir(outlier)) == ["model.onnx"]


def failing_on(name: str, monkeypatch) -> None:
    real = export.encrypt_file

    def encrypt_file(path, *args, **kwargs):
        if path.name == name:
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(export, "encrypt_file", encrypt_file)


def test_a_failed_encryption_removes_the_plaintext(tiny_spec, monkeypatch):
    spec, root = load_spec(tiny_spec).models[0], tiny_spec.parent
    set_key(root, monkeypatch)
    failing_on("model.onnx", monkeypatch)
    with pytest.raises(BuildError, match="encrypting model.onnx failed .*plaintext weights were"):
        export_model(spec, Layout.of(root))
    assert not Layout.of(root).artifact_dir(spec).exists()


def test_a_key_set_after_the_build_encrypts_or_removes(tiny_spec, monkeypatch):
    spec, root = load_spec(tiny_spec).models[0], tiny_spec.parent
    monkeypatch.delenv(KEY_ENV, raising=False)
    export_model(spec, Layout.of(root))
    out = Layout.of(root).artifact_dir(spec)
    set_key(root, monkeypatch)
    failing_on("model.onnx", monkeypatch)
    with pytest.raises(BuildError, match="encrypting model.onnx failed"):
        export_model(spec, Layout.of(root))
    # the TorchScript file was encrypted before the failure; the ONNX one is gone
    assert weight_files(out) == ["model.torchscript.pt"]
    assert (out / "model.torchscript.pt").read_bytes().startswith(MAGIC)
    monkeypatch.undo()
    set_key(root, monkeypatch)
    assert not export_model(spec, Layout.of(root)).skipped  # exported again, then encrypted
    assert all(p.read_bytes().startswith(MAGIC) for p in out.glob("model.*"))


def test_a_key_others_can_read_is_refused_before_anything_is_written(tiny_spec, monkeypatch):
    spec, root = load_spec(tiny_spec).models[0], tiny_spec.parent
    key = set_key(root, monkeypatch, mode=0o644)
    with pytest.raises(BuildError, match=f"tiny: .*chmod 600 {key}"):
        export_model(spec, Layout.of(root))
    assert not Layout.of(root).artifact_dir(spec).exists()
