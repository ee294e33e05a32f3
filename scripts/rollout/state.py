"""What each runtime serves, kept across `make stop` / `make serve`: reports/versions.json holds
per runtime and model the default version, the one kept for a rollback, when it changed and the
gate's figures; reports/rollouts.jsonl gets one line per rollout, rollback or refusal."""
from __future__ import annotations

import json
import time
from pathlib import Path

from scripts.pipeline.paths import REPORTS

STATE = REPORTS / "versions.json"
LOG = REPORTS / "rollouts.jsonl"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_state(root: Path) -> dict:
    """{runtime: {model: {"default", "previous", "changed", "gate"}}}; {} before any rollout."""
    try:
        return json.loads((root / STATE).read_text())
    except (OSError, ValueError):
        return {}


def served(root: Path, runtime: str, model: str) -> dict:
    return read_state(root).get(runtime, {}).get(model, {})


def record(root: Path, runtime: str, model: str, default: int, previous: int | None, gate: dict | None) -> None:
    state = read_state(root)
    state.setdefault(runtime, {})[model] = {"default": default, "previous": previous, "changed": now(), "gate": gate}
    (root / STATE).parent.mkdir(parents=True, exist_ok=True)
    written = (root / STATE).with_suffix(".json.tmp")
    written.write_text(json.dumps(state, indent=2) + "\n")
    written.replace(root / STATE)   # atomic: a reader never sees half a file


def log(root: Path, event: dict) -> None:
    (root / LOG).parent.mkdir(parents=True, exist_ok=True)
    with open(root / LOG, "a") as handle:
        handle.write(json.dumps({"time": now(), **event}, default=str) + "\n")
