"""Reading models.yaml: YAML -> SpecFile, every problem as one line naming the model, the field
and the fix (SpecError), never a pydantic traceback."""

from __future__ import annotations

import contextlib
import difflib
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from handlers.preprocessing.kinds import KINDS
from scripts.spec.errors import SpecError
from scripts.spec.schema import SpecFile


def load_spec(path: str | Path = "models.yaml") -> SpecFile:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError([f"{path}: spec file not found (pass --spec PATH)"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            [f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    # Paths in the spec are relative to its root (the spec file's folder unless `root:` says
    # otherwise); imports resolve from there too.
    root = spec_root(path, raw.get("root", ".") if isinstance(raw, dict) else ".")
    problems = _duplicate_names(path, raw)
    with _on_import_path(root):
        try:
            spec = SpecFile.model_validate(raw, context={"root": root})
        except ValidationError as exc:
            problems += [_describe(path, raw, error) for error in exc.errors()]
    if problems:
        raise SpecError(problems)
    return spec


def spec_root(path: Path, root: str | Path = ".") -> Path:
    """The folder a spec's paths, imports and build outputs are relative to."""
    return (path.resolve().parent / root).resolve()


def _duplicate_names(path: Path, raw: Any) -> list[str]:
    """Checked on the raw entries, so a duplicate is reported even when an entry is invalid."""
    entries = raw.get("models") if isinstance(raw, dict) else None
    names: list[str] = [e["name"] for e in entries or [] if isinstance(e, dict) and e.get("name")]
    return [
        f"{path}: model {n!r}: name: used by {names.count(n)} models; each model needs its own name"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]


@contextlib.contextmanager
def _on_import_path(root: Path):
    """The spec's folder on sys.path while validating, so `module:` targets next to it import."""
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(root))


def _all_field_names() -> set[str]:
    names: set[str] = set()
    pending = list(BaseModel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.startswith(("handlers.", "scripts.spec")):
            names.update(cls.model_fields)
    return names


def _describe(path: Path, raw: Any, error: Mapping[str, Any]) -> str:
    loc = list(error["loc"])
    where = f"{path}"
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entry = raw["models"][loc[1]] if isinstance(raw, dict) else {}
        name = entry.get("name") if isinstance(entry, dict) else None
        where += f": models[{loc[1]}]" + (f" {name!r}" if name else "")
        loc = loc[2:]
    field = _dotted(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _all_field_names(), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "remove it (see the spec reference, docs/spec.md)"
        )
        message = f"unknown field; {hint}"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "model_type" and not loc:
        message = "the spec must be a mapping with a top-level 'models:' list"
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _dotted(loc: list) -> str:
    """('inputs', 0, 'dtype') -> 'inputs[0].dtype'; drops pydantic's union-tag entries."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KINDS and out.endswith("preprocess"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out
