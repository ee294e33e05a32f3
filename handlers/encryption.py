"""Weights encrypted at rest: AES-256-GCM (the `cryptography` library) over each exported weight
file, so an artifact copied anywhere (a bucket, a registry, a backup) does not give its
parameters away.

- The key file: TORCHSHIP_ENCRYPTION_KEY_FILE names a file holding 32 random bytes, raw or as 64
  hex characters (`openssl rand -hex 32 > weights.key; chmod 600 weights.key`). It must be a
  regular file, readable by its owner only (or by the pod's fsGroup: a Kubernetes Secret), and
  random (an all-zero or text key is refused). Each model version is encrypted with its own key,
  derived from that one with HKDF-SHA256 (info: model name and version).
- The model name, version and file name are bound as associated data: a file copied over another
  model's, version's or format's does not decrypt.
- A file (format 2) is MAGIC, a 7-byte nonce prefix, the chunk size (4 bytes, big-endian), then
  the chunks, each sealed on its own: any file size, in bounded memory (one AESGCM call is limited
  to 2 GiB). A chunk's nonce is prefix + counter + a last-chunk flag (the STREAM construction), so
  chunks cannot be reordered, dropped or the file cut at a chunk boundary. Format 1 (MAGIC_V1, a
  12-byte nonce, one sealed blob) is still read.
Run-time code (the handlers decrypt in memory at load: handlers/runners.py) and the build (which
encrypts after verifying: scripts/pipeline/export.py) share this module.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

MAGIC = b"TORCHSHIP-AES256GCM-2\n"
MAGIC_V1 = b"TORCHSHIP-AES256GCM-1\n"
KEY_ENV = "TORCHSHIP_ENCRYPTION_KEY_FILE"
NONCE_BYTES = 12
PREFIX_BYTES = 7  # + 4-byte chunk counter + 1-byte last flag = the 12-byte GCM nonce
TAG_BYTES = 16
CHUNK_BYTES = 16 << 20
KEY_FILE_MAX = 128  # 64 hex characters and some whitespace; anything larger is not a key file
MIN_DISTINCT_BYTES = 16  # 32 random bytes have ~30 distinct values; fewer than 16 is a pattern


class WeightsError(RuntimeError):
    """Encrypted weights that cannot be opened: one line naming the file, the cause and the fix."""


def key_file() -> Path | None:
    value = os.environ.get(KEY_ENV, "").strip()
    return Path(value) if value else None


def refuse_mode(path: Path, info: os.stat_result) -> None:
    """Owner-only, except the group read a Kubernetes Secret gets with fsGroup (owned by root,
    read by a non-root process through its group)."""
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{KEY_ENV}={path}: not a regular file; point it at the key file")
    loose = info.st_mode & 0o077
    fs_group = info.st_uid == 0 and os.geteuid() != 0
    if fs_group and info.st_gid in {os.getegid(), *os.getgroups()}:
        loose &= ~0o040
    if loose:
        raise WeightsError(
            f"{KEY_ENV}={path}: the key file is accessible to group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`"
        )


def parse_key(path: Path, data: bytes) -> bytes:
    text = data.strip()
    key = None
    if len(text) == 64:
        try:
            key = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if key is None and len(data) == 32:
        key = data
    if key is None:
        raise WeightsError(
            f"{KEY_ENV}={path}: expected 32 random bytes or 64 hex characters, got "
            f"{len(data)}{'+' if len(data) > KEY_FILE_MAX else ''} bytes; make one with "
            "`openssl rand -hex 32`"
        )
    if len(set(key)) < MIN_DISTINCT_BYTES or all(32 <= b < 127 for b in key):
        raise WeightsError(
            f"{KEY_ENV}={path}: the key is not random (all zero, a repeated pattern or text); "
            "make one with `openssl rand -hex 32`"
        )
    return key


def master_key() -> bytes | None:
    """The key of TORCHSHIP_ENCRYPTION_KEY_FILE; None when the variable is unset."""
    path = key_file()
    if path is None:
        return None
    try:
        # O_NONBLOCK: a FIFO named by mistake is refused below instead of hanging the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise WeightsError(f"{KEY_ENV}={path}: cannot read the key file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        refuse_mode(path, os.fstat(fd))
        data = handle.read(KEY_FILE_MAX + 1)  # bounded: never the whole of a wrong file
    return parse_key(path, data)


def version_key(master: bytes, model: str, version: int | str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"torchship weights {model} v{version}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def associated_data(model: str, version: int | str, file_name: str) -> bytes:
    return json.dumps([model, str(version), file_name]).encode()


def chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, int(last))


def encrypt_stream(
    source: BinaryIO, sink: BinaryIO, key: bytes, aad: bytes, chunk_bytes: int = CHUNK_BYTES
) -> None:
    """Plaintext from `source` (a binary file) sealed chunk by chunk into `sink`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aes, prefix = AESGCM(key), os.urandom(PREFIX_BYTES)
    sink.write(MAGIC + prefix + struct.pack(">I", chunk_bytes))
    chunk, index = source.read(chunk_bytes), 0
    while True:
        following = source.read(chunk_bytes) if len(chunk) == chunk_bytes else b""
        last = not following
        sink.write(aes.encrypt(chunk_nonce(prefix, index, last), chunk, aad))
        if last:
            return
        chunk, index = following, index + 1


def decrypt_stream(source: BinaryIO, key: bytes, aad: bytes) -> bytes:
    """The plaintext of a format-2 file opened at its start (raises InvalidTag when it was
    encrypted otherwise, altered, reordered or cut)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = source.read(len(MAGIC) + PREFIX_BYTES + 4)
    prefix, (chunk_bytes,) = header[len(MAGIC) : -4], struct.unpack(">I", header[-4:])
    aes, index = AESGCM(key), 0
    parts: list[bytes] = []
    sealed = source.read(chunk_bytes + TAG_BYTES)
    while True:
        following = source.read(chunk_bytes + TAG_BYTES)
        if len(sealed) < TAG_BYTES:
            raise InvalidTag()
        parts.append(aes.decrypt(chunk_nonce(prefix, index, not following), sealed, aad))
        if not following:
            return b"".join(parts)
        sealed, index = following, index + 1


def encrypt(data: bytes, master: bytes, model: str, version: int | str, file_name: str) -> bytes:
    import io

    sink = io.BytesIO()
    aad = associated_data(model, version, file_name)
    encrypt_stream(io.BytesIO(data), sink, version_key(master, model, version), aad)
    return sink.getvalue()


def is_encrypted(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) in (MAGIC, MAGIC_V1)


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
    key, aad = version_key(master, model, version), associated_data(model, version, path.name)
    try:
        with open(path, "rb") as handle:
            if handle.read(len(MAGIC)) == MAGIC:
                handle.seek(0)
                return decrypt_stream(handle, key, aad)
            nonce = handle.read(NONCE_BYTES)
            return AESGCM(key).decrypt(nonce, handle.read(), aad)
    except InvalidTag:
        raise WeightsError(
            f"{model} v{version}: {path.name} does not decrypt: the key in {key_file()} is not "
            "the one it was encrypted with, or the file belongs to another model, version or "
            "format, or was altered"
        ) from None


def encrypt_file(
    path: Path, master: bytes, model: str, version: int | str, chunk_bytes: int = CHUNK_BYTES
) -> bool:
    """Replace a plaintext weight file by its ciphertext (streamed beside it, then renamed over
    it; the partial file is removed if that fails); False when it is encrypted already."""
    if is_encrypted(path):
        return False
    partial = path.with_name(path.name + ".encrypting")
    key, aad = version_key(master, model, version), associated_data(model, version, path.name)
    try:
        with open(path, "rb") as source, open(partial, "wb") as sink:
            encrypt_stream(source, sink, key, aad, chunk_bytes)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return True


def write_all(fd: int, data: bytes) -> None:
    """os.write writes at most ~2 GiB per call on Linux: loop until everything is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def private_tempdir() -> Generator[str, None, None]:
    """TMPDIR in a private folder in memory (/dev/shm) for the duration, removed after. Python's
    cached temp dir (tempfile.tempdir) and TorchInductor's cache dir (which it writes into the
    environment) are put back as they were, so nothing keeps pointing at the removed folder."""
    private = tempfile.mkdtemp(
        prefix="torchship-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
    )
    names = ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR")
    saved_env, saved_cached = {n: os.environ.get(n) for n in names}, tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = private, private
    try:
        yield private
    finally:
        tempfile.tempdir = saved_cached
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(private, ignore_errors=True)


@contextmanager
def in_memory_file(data: bytes, name: str) -> Generator[str, None, None]:
    """A path to `data` in an anonymous memory file (memfd), for a loader that wants a path.
    The AOTInductor loader also unpacks its shared library into TMPDIR and keeps it there: that
    goes to private_tempdir(), removed once loaded (the library stays mapped)."""
    fd = os.memfd_create(name)
    try:
        write_all(fd, data)
        with private_tempdir():
            yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
