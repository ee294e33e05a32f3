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


def exported_formats(spec: ModelSpec, root: Path = Path(".")) -> list[str]:
    """The formats `make export` produced and verified (with `formats: auto`, those that
    worked), from its stamp; the spec's list before anything was exported."""
    import json

    try:
        return list(json.loads((artifact_dir(spec, root) / "build.json").read_text())["formats"])
    except (OSError, ValueError, KeyError):
        return spec.export.wanted


def golden(spec: ModelSpec, root: Path = Path(".")) -> dict:
    """The golden model inputs saved by export: {input name: rows}."""
    import numpy as np

    with np.load(artifact_dir(spec, root) / "golden.npz") as saved:
        return {t.name: saved[f"input.{t.name}"] for t in spec.inputs}
