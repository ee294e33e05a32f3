"""Weights encrypted at rest (handlers/encryption.py): AES-256-GCM bound to the model, version and
file name, decrypted in memory by the runners the servers use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from handlers.encryption import KEY_ENV, MAGIC, WeightsError, decrypted, encrypt_file, master_key
from handlers.formats import FORMATS
from handlers.runners import load_runner
from scripts.pipeline.paths import golden
from tests.conftest import LAYOUT, TENSOR_EXAMPLES

pytestmark = pytest.mark.usefixtures("built_examples")
DIGITS = next(m for m in TENSOR_EXAMPLES if m.name == "digits_cnn")
SENTIMENT = next(m for m in TENSOR_EXAMPLES if m.name == "sentiment_lstm")


@pytest.fixture
def key(tmp_path, monkeypatch) -> bytes:
    path = tmp_path / "weights.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)  # a key others can read is refused
    monkeypatch.setenv(KEY_ENV, str(path))
    return master_key()


def encrypted_copy(spec, fmt: str, folder: Path, key: bytes) -> Path:
    target = folder / FORMATS[fmt].file
    shutil.copy2(LAYOUT.artifact_dir(spec) / FORMATS[fmt].file, target)
    assert encrypt_file(target, key, spec.name, spec.version)
    assert target.read_bytes().startswith(MAGIC)
    assert not encrypt_file(target, key, spec.name, spec.version)  # never twice
    return target


@pytest.mark.parametrize(
    "spec, fmt",
    [(DIGITS, "onnx"), (DIGITS, "onnx_int8"), (DIGITS, "torchscript"), (SENTIMENT, "aoti")],
    ids=["onnx", "int8", "torchscript", "aoti"],
)
def test_an_encrypted_export_answers_as_the_plaintext_one(spec, fmt, key, tmp_path):
    shm = set(Path("/dev/shm").glob("torchship-*"))
    inputs = golden(spec, LAYOUT)
    plain = load_runner(fmt, LAYOUT.artifact_dir(spec) / FORMATS[fmt].file, spec.tensor_names)
    sealed = encrypted_copy(spec, fmt, tmp_path, key)
    runner = load_runner(fmt, sealed, spec.tensor_names, owner=(spec.name, spec.version))
    for a, b in zip(plain(inputs), runner(inputs)):
        np.testing.assert_array_equal(a, b)
    assert set(Path("/dev/shm").glob("torchship-*")) == shm  # the AOTI unpacking is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["weights.key", sealed.name])


def test_a_swapped_file_wrong_key_or_missing_key_is_refused_in_one_line(key, tmp_path, monkeypatch):
    sealed = encrypted_copy(DIGITS, "onnx", tmp_path, key)
    assert decrypted(sealed, DIGITS.name, DIGITS.version)[:4] != MAGIC[:4]
    for owner in (("tabular_mlp", 1), (DIGITS.name, 2)):  # another model's or version's
        with pytest.raises(WeightsError, match="does not decrypt"):
            decrypted(sealed, *owner)
    renamed = sealed.rename(tmp_path / FORMATS["onnx_int8"].file)  # another format's name
    with pytest.raises(WeightsError, match="belongs to another model, version or format"):
        load_runner("onnx_int8", renamed, DIGITS.tensor_names, owner=(DIGITS.name, 1))
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    monkeypatch.setenv(KEY_ENV, str(other))
    with pytest.raises(WeightsError, match="is not the one it was encrypted with"):
        decrypted(renamed, DIGITS.name, 1)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(WeightsError, match=f"is encrypted; set {KEY_ENV}"):
        decrypted(renamed, DIGITS.name, 1)
    assert decrypted(LAYOUT.artifact_dir(DIGITS) / "model.onnx", DIGITS.name, 1) is None


def test_a_key_file_that_is_not_32_bytes_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "short.key"
    path.write_text("abc")
    path.chmod(0o600)
    monkeypatch.setenv(KEY_ENV, str(path))
    with pytest.raises(WeightsError, match="openssl rand -hex 32"):
        master_key()
