"""The example models and their golden samples: the answers every KServe pod started here must
give."""

from __future__ import annotations

import numpy as np

from scripts.pipeline.verify import compare
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

SPECFILE = load_spec(REPO / "models.yaml")
SPEC = {m.name: m for m in SPECFILE.models if m.task.generation is None}  # golden tensors
SERVED = sorted(m.name for m in SPECFILE.models)  # every model the bundles carry


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(LAYOUT.artifact_dir(SPEC[name]) / "golden.npz") as saved:
        return dict(saved)


def assert_golden(name: str, outputs: dict[str, np.ndarray], rows: int) -> None:
    data = golden(name)
    for t in SPEC[name].outputs:
        result = compare(
            np.asarray(outputs[t.name], dtype=np.float32).reshape(
                data[f"output.{t.name}"][:rows].shape
            ),
            data[f"output.{t.name}"][:rows],
            SPEC[name].tolerance,
        )
        assert result.passed, (name, t.name, result)
