"""Content hashes of a step's inputs, so an unchanged model is not rebuilt."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from scripts.spec.errors import BuildError


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_file(target: str) -> Path:
    """'package.module:Name' -> the .py file that defines it."""
    found = importlib.util.find_spec(target.split(":")[0])
    if found is None or found.origin is None:
        raise BuildError(f"{target}: no such module on the import path")
    return Path(found.origin)


def fingerprint(settings: Any, files: list[Path]) -> str:
    """One hash over JSON-able settings and the names and contents of files (missing files count
    too). Not over where they are: a checkout or a user's repository moved elsewhere, or a test's
    copy of it, is as fresh as it was."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    contents = {(p.name, file_digest(p) if p.exists() else "<missing>") for p in map(Path, files)}
    for name, content in sorted(contents):
        digest.update(name.encode())
        digest.update(content.encode())
    return digest.hexdigest()


def is_fresh(stamp: Path, expected: str, outputs: list[Path]) -> bool:
    """True when the stamp records `expected` and every output still exists."""
    try:
        recorded = json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError):
        return False
    return recorded == expected and all(p.exists() for p in outputs)


def write_stamp(stamp: Path, value: str, **extra: Any) -> None:
    stamp.write_text(json.dumps({"fingerprint": value, **extra}, indent=2, default=str) + "\n")
