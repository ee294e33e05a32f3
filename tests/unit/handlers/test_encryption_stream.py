"""handlers/encryption.py without built artifacts: the chunked format (any file size in bounded
memory, exercised here with tiny chunks), the key file's checks, and the in-memory loading helpers
(whole writes to the memfd; no temp dir left pointing at a removed folder)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest

from handlers import encryption
from handlers.encryption import (
    KEY_ENV,
    MAGIC,
    MAGIC_V1,
    WeightsError,
    decrypted,
    encrypt_file,
    in_memory_file,
    master_key,
)

OWNER = ("tiny", 3)


@pytest.fixture
def key(tmp_path, monkeypatch) -> bytes:
    path = tmp_path / "weights.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    monkeypatch.setenv(KEY_ENV, str(path))
    return master_key()


def sealed_file(folder: Path, data: bytes, key: bytes, chunk: int) -> Path:
    path = folder / "model.onnx"
    path.write_bytes(data)
    assert encrypt_file(path, key, *OWNER, chunk_bytes=chunk)
    return path


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 1000])
def test_chunked_files_of_any_size_round_trip(size, key, tmp_path):
    data = os.urandom(size)
    path = sealed_file(tmp_path, data, key, chunk=64)
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    # a few random bytes can occur in any ciphertext by chance: only a longer run tells
    assert size < 16 or data not in blob
    chunks = max(1, -(-size // 64))
    assert len(blob) == len(MAGIC) + 7 + 4 + size + 16 * chunks
    assert decrypted(path, *OWNER) == data
    assert not encrypt_file(path, key, *OWNER)  # never twice
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "weights.key"]


def test_cut_reordered_or_altered_chunks_do_not_decrypt(key, tmp_path):
    path = sealed_file(tmp_path, os.urandom(200), key, chunk=64)
    blob = path.read_bytes()
    head, body = blob[: len(MAGIC) + 11], blob[len(MAGIC) + 11 :]
    chunks = [body[i : i + 80] for i in range(0, len(body), 80)]
    for changed in (
        head + b"".join(chunks[:2]),  # cut at a chunk boundary
        head + chunks[1] + chunks[0] + b"".join(chunks[2:]),  # reordered
        blob[:-1] + bytes([blob[-1] ^ 1]),  # altered
    ):
        path.write_bytes(changed)
        with pytest.raises(WeightsError, match="does not decrypt"):
            decrypted(path, *OWNER)


def test_format_1_files_still_decrypt(key, tmp_path):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data, nonce = os.urandom(100), os.urandom(12)
    aad = encryption.associated_data(*OWNER, "model.onnx")
    sealed = AESGCM(encryption.version_key(key, *OWNER)).encrypt(nonce, data, aad)
    path = tmp_path / "model.onnx"
    path.write_bytes(MAGIC_V1 + nonce + sealed)
    assert decrypted(path, *OWNER) == data
    assert not encrypt_file(path, key, *OWNER)


def test_a_failed_encryption_leaves_no_partial_file(key, tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights" * 100)

    def broken(source, sink, *args):
        sink.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encryption, "encrypt_stream", broken)
    with pytest.raises(OSError):
        encrypt_file(path, key, *OWNER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "weights.key"]


def key_file(tmp_path, monkeypatch, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "weights.key"
    path.write_bytes(content)
    path.chmod(mode)
    monkeypatch.setenv(KEY_ENV, str(path))
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_key_file_others_can_access_is_refused_naming_chmod(mode, tmp_path, monkeypatch):
    path = key_file(tmp_path, monkeypatch, os.urandom(32).hex().encode(), mode)
    with pytest.raises(WeightsError, match=f"group or others .*run `chmod 600 {path}`"):
        master_key()


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_key_file_is_accepted_raw_or_hex(mode, tmp_path, monkeypatch):
    raw = os.urandom(32)
    key_file(tmp_path, monkeypatch, raw, mode)
    assert master_key() == raw
    key_file(tmp_path, monkeypatch, raw.hex().encode() + b"\n", 0o600)
    assert master_key() == raw


@pytest.mark.parametrize(
    "content, expected",
    [
        (bytes(32), "not random"),
        (b"00" * 32 + b"\n", "not random"),
        (b"ab" * 32, "not random"),
        (b"correct horse battery staple!!!!", "not random"),
        (b"abc", "got 3 bytes"),
        (os.urandom(10 << 20), f"got {encryption.KEY_FILE_MAX + 1}\\+ bytes"),
    ],
    ids=["zero", "zero-hex", "pattern", "text", "short", "huge"],
)
def test_a_weak_or_wrong_sized_key_is_refused(content, expected, tmp_path, monkeypatch):
    key_file(tmp_path, monkeypatch, content)
    with pytest.raises(WeightsError, match=expected):
        master_key()


def test_a_key_path_that_is_not_a_regular_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "/dev/zero")  # read whole, this never ended
    with pytest.raises(WeightsError, match="not a regular file"):
        master_key()
    os.mkfifo(tmp_path / "fifo", 0o600)
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "fifo"))
    with pytest.raises(WeightsError, match="not a regular file"):
        master_key()


def test_the_memory_file_gets_every_byte_of_short_writes(monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    data = os.urandom(1000)
    with in_memory_file(data, "model.aoti.pt2") as path:
        assert Path(path).read_bytes() == data


def test_no_temp_dir_is_left_pointing_at_the_removed_folder(monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # not computed yet, as in a fresh worker
    before = tempfile.gettempdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    with in_memory_file(b"x", "model.aoti.pt2"):
        inner = tempfile.gettempdir()  # what the AOTInductor loader caches
        assert inner != before and Path(inner).is_dir()
        assert cache_dir().startswith(inner)  # TorchInductor writes it into the environment
    assert tempfile.gettempdir() == before and Path(before).is_dir()
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert not Path(inner).exists()
    with tempfile.NamedTemporaryFile() as handle:  # failed with ENOENT before
        handle.write(b"ok")


def test_encrypt_in_memory_matches_the_file_format(key):
    sealed = encryption.encrypt(b"abc", key, *OWNER, "model.onnx")
    assert sealed.startswith(MAGIC)
    key_, aad = (
        encryption.version_key(key, *OWNER),
        encryption.associated_data(*OWNER, "model.onnx"),
    )
    assert encryption.decrypt_stream(io.BytesIO(sealed), key_, aad) == b"abc"


def test_a_kubernetes_secret_read_through_fs_group_is_accepted(tmp_path, monkeypatch):
    """kubelet mounts a Secret owned by root with the pod's fsGroup and adds group read (0440):
    a non-root process in that group may read it; others still may not."""
    path = key_file(tmp_path, monkeypatch, os.urandom(32).hex().encode(), 0o440)
    os.chown(path, 0, 2000) if os.geteuid() == 0 else pytest.skip("needs root to chown")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getgroups", lambda: [2000])
    assert len(master_key()) == 32
    path.chmod(0o444)
    with pytest.raises(WeightsError, match="chmod 600"):
        master_key()
    monkeypatch.setattr(os, "getgroups", lambda: [3000])  # a group this process is not in
    path.chmod(0o440)
    with pytest.raises(WeightsError, match="chmod 600"):
        master_key()
