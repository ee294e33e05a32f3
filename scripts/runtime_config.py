"""The run-time view of one spec entry: `model_config.json`, shipped into every .mar and every
Triton model directory. Labels and pre-processing state (statistics, vocabulary) are inlined,
so the servers need no other file and never import `scripts/`."""
from __future__ import annotations

import json
from pathlib import Path

from handlers.runners import ARTIFACT_FILES
from scripts.spec import ModelSpec

CONFIG_FILE = "model_config.json"


def runtime_config(spec: ModelSpec, root: Path) -> dict:
    task = spec.task
    preprocess = task.preprocess.model_dump(mode="json", exclude={"stats", "vocab"})
    if task.preprocess.kind == "standardize":
        stats = json.loads((root / task.preprocess.stats).read_text())
        preprocess.update(mean=stats["mean"], std=stats["std"])
    if task.preprocess.kind == "text":
        preprocess["tokens"] = json.loads((root / task.preprocess.vocab).read_text())["tokens"]
    labels = (root / task.labels).read_text().splitlines() if task.labels else []
    return {
        "name": spec.name,
        "version": spec.version,
        "format": spec.serving.format,
        "artifact": ARTIFACT_FILES[spec.serving.format],
        "max_batch_size": spec.batching.max_batch_size,
        "threads": spec.serving.threads,
        "inputs": [t.model_dump(mode="json") for t in spec.inputs],
        "outputs": [t.model_dump(mode="json") for t in spec.outputs],
        "task": {"kind": task.kind, "output": task.output, "top_k": min(task.top_k, len(labels) or 1),
                 "labels": [label for label in labels if label], "preprocess": preprocess},
    }


def write_runtime_config(spec: ModelSpec, root: Path, folder: Path) -> Path:
    path = folder / CONFIG_FILE
    path.write_text(json.dumps(runtime_config(spec, root), indent=1) + "\n")
    return path
