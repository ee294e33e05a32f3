"""What each runtime serves, kept across `make stop` / `make serve`: reports/versions.json holds
per runtime and model the default version, the one kept for a rollback, when it changed and the
gate's figures; reports/rollouts.jsonl gets one line per rollout, rollback or refusal."""

from __future__ import annotations

import json
import time
from pathlib import Path

from scripts.pipeline.layout import Layout


def state_file(layout: Layout) -> Path:
    return layout.reports / "versions.json"


def log_file(layout: Layout) -> Path:
    return layout.reports / "rollouts.jsonl"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_state(layout: Layout) -> dict:
    """{runtime: {model: {"default", "previous", "changed", "gate"}}}; {} before any rollout."""
    try:
        return json.loads(state_file(layout).read_text())
    except (OSError, ValueError):
        return {}


def served(layout: Layout, runtime: str, model: str) -> dict:
    return read_state(layout).get(runtime, {}).get(model, {})


def record(
    layout: Layout, runtime: str, model: str, default: int, previous: int | None, gate: dict | None
) -> None:
    state = read_state(layout)
    state.setdefault(runtime, {})[model] = {
        "default": default,
        "previous": previous,
        "changed": now(),
        "gate": gate,
    }
    state_file(layout).parent.mkdir(parents=True, exist_ok=True)
    written = state_file(layout).with_suffix(".json.tmp")
    written.write_text(json.dumps(state, indent=2) + "\n")
    written.replace(state_file(layout))  # atomic: a reader never sees half a file


def log(layout: Layout, event: dict) -> None:
    log_file(layout).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file(layout), "a") as handle:
        handle.write(json.dumps({"time": now(), **event}, default=str) + "\n")
