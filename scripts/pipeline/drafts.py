"""A generation version's draft (speculative decoding, spec: task.generation.draft or a
version's serving.draft): another version of the same model, built before it, whose served
folder travels inside the target's folder as `draft/` (so every runtime artifact, bundle and
signature carries it) and whose served format the plan names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from handlers.engines.speculative import DRAFT_FOLDER
from handlers.formats import folder_format
from handlers.plan import Generation
from scripts.pipeline.layout import ArtifactDir, Layout
from scripts.spec import BuildError, ModelSpec


def draft_build(spec: ModelSpec, layout: Layout) -> ArtifactDir | None:
    """The draft version's artifact folder (None: no draft)."""
    generation = spec.task.generation
    if generation is None or generation.draft is None:
        return None
    return ArtifactDir(layout.artifacts / spec.name / str(generation.draft.version))


def served_generation(spec: ModelSpec, layout: Layout) -> Generation | None:
    """task.generation as served: a draft's format is the one its version serves (read from
    its build's verification report)."""
    generation, built = spec.task.generation, draft_build(spec, layout)
    if generation is None or generation.draft is None or built is None:
        return generation
    if generation.draft.format is not None:
        return generation
    draft = generation.draft.model_copy(update={"format": served_format(spec, built)})
    return generation.model_copy(update={"draft": draft})


def served_format(spec: ModelSpec, built: ArtifactDir) -> str:
    if not built.report.exists():
        raise BuildError(
            f"{spec.name} v{spec.version} decodes with version {built.root.name} as its draft, "
            f"which is not built ({built.root} has no verify.json): build that version first "
            "(its training, then its export)"
        )
    return str(json.loads(built.report.read_text())["served"])


def copy_draft(spec: ModelSpec, layout: Layout, folder: Path) -> list[Path]:
    """The draft's served folder copied into `folder`/draft; returns its files (for the
    export's fingerprint)."""
    built = draft_build(spec, layout)
    if built is None:
        return []
    source = built.root / folder_format(served_format(spec, built)).file
    shutil.copytree(source, folder / DRAFT_FOLDER, dirs_exist_ok=True)
    return sorted(f for f in source.rglob("*") if f.is_file())


def draft_files(spec: ModelSpec, layout: Layout) -> list[Path]:
    """The files of the draft's build the target's export depends on."""
    built = draft_build(spec, layout)
    if built is None:
        return []
    return [built.report, built.stamp] if built.report.exists() else [built.root]
