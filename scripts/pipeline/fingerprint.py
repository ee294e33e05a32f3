"""Content hashes of a step's inputs, so an unchanged model is not rebuilt."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_file(target: str) -> Path:
    """'package.module:Name' -> the .py file that defines it."""
    return Path(importlib.util.find_spec(target.split(":")[0]).origin)


def fingerprint(settings: Any, files: list[Path]) -> str:
    """One hash over JSON-able settings and the contents of files (missing files count too)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted({Path(f) for f in files}):
        digest.update(str(path).encode())
        digest.update(file_digest(path).encode() if path.exists() else b"<missing>")
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
