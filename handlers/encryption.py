"""Weights encrypted at rest: AES-256-GCM (the `cryptography` library) over each exported weight
file, so an artifact copied anywhere (a bucket, a registry, a backup) does not give its
parameters away.

- The key file: TORCHSHIP_ENCRYPTION_KEY_FILE names a file holding 32 random bytes, raw or as 64
  hex characters (`openssl rand -hex 32 > weights.key`). Each model version is encrypted with its
  own key, derived from that one with HKDF-SHA256 (info: model name and version).
- The model name, version and file name are bound as associated data: a file copied over another
  model's, version's or format's does not decrypt.
- A file is MAGIC, a 12-byte nonce, then the ciphertext with its tag.
Run-time code (the handlers decrypt in memory at load: handlers/runners.py) and the build (which
encrypts after verifying: scripts/pipeline/export.py) share this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MAGIC = b"TORCHSHIP-AES256GCM-1\n"
KEY_ENV = "TORCHSHIP_ENCRYPTION_KEY_FILE"
NONCE_BYTES = 12


class WeightsError(RuntimeError):
    """Encrypted weights that cannot be opened: one line naming the file, the cause and the fix."""


def key_file() -> Path | None:
    value = os.environ.get(KEY_ENV, "").strip()
    return Path(value) if value else None


def master_key() -> bytes | None:
    """The key of TORCHSHIP_ENCRYPTION_KEY_FILE; None when the variable is unset."""
    path = key_file()
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{KEY_ENV}={path}: cannot read the key file ({exc.strerror})") from None
    text = data.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == 32:
        return data
    raise WeightsError(
        f"{KEY_ENV}={path}: expected 32 random bytes or 64 hex characters, got {len(data)} bytes; "
        "make one with `openssl rand -hex 32`"
    )


def version_key(master: bytes, model: str, version: int | str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"torchship weights {model} v{version}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def associated_data(model: str, version: int | str, file_name: str) -> bytes:
    return json.dumps([model, str(version), file_name]).encode()


def encrypt(data: bytes, master: bytes, model: str, version: int | str, file_name: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    key = version_key(master, model, version)
    return (
        MAGIC + nonce + AESGCM(key).encrypt(nonce, data, associated_data(model, version, file_name))
    )


def is_encrypted(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def decrypted(path: Path, model: str, version: int | str) -> bytes | None:
    """The weights of an encrypted file, in memory; None for a plaintext one (read it by path)."""
    if not is_encrypted(path):
        return None
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    master = master_key()
    if master is None:
        raise WeightsError(
            f"{model} v{version}: {path.name} is encrypted; set {KEY_ENV} to its key file "
            "in the server's environment"
        )
    blob = path.read_bytes()
    nonce, sealed = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES], blob[len(MAGIC) + NONCE_BYTES :]
    try:
        return AESGCM(version_key(master, model, version)).decrypt(
            nonce, sealed, associated_data(model, version, path.name)
        )
    except InvalidTag:
        raise WeightsError(
            f"{model} v{version}: {path.name} does not decrypt: the key in {key_file()} is not "
            "the one it was encrypted with, or the file belongs to another model, version or format"
        ) from None


def encrypt_file(path: Path, master: bytes, model: str, version: int | str) -> bool:
    """Replace a plaintext weight file by its ciphertext (written beside, then renamed over it);
    False when it is encrypted already."""
    if is_encrypted(path):
        return False
    sealed = encrypt(path.read_bytes(), master, model, version, path.name)
    partial = path.with_name(path.name + ".encrypting")
    partial.write_bytes(sealed)
    os.replace(partial, path)
    return True
