"""Where the build puts things (no heavy imports: every step may need these)."""
from __future__ import annotations

from pathlib import Path

from scripts.spec import ModelSpec

MODEL_STORE = Path("model_store")
TRITON_REPO = Path("triton_repo")
REPORTS = Path("reports")
BUILD = Path("build")


def artifact_dir(spec: ModelSpec, root: Path = Path(".")) -> Path:
    return root / "artifacts" / spec.name / str(spec.version)


def golden(spec: ModelSpec, root: Path = Path(".")) -> dict:
    """The golden model inputs saved by export: {input name: rows}."""
    import numpy as np

    with np.load(artifact_dir(spec, root) / "golden.npz") as saved:
        return {t.name: saved[f"input.{t.name}"] for t in spec.inputs}
