"""The serving plan of one model (handlers/plan.py), computed from the spec entry and the files
it names. Both runtimes build from it; its content and its input files are what every runtime
artifact's fingerprint is taken over, so editing a labels file or a vocabulary rebuilds exactly
that model's `.mar` and Triton models."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import handlers
from handlers.plan import ServingPlan, TaskPlan
from scripts.pipeline.drafts import served_generation
from scripts.pipeline.fingerprint import fingerprint
from scripts.pipeline.layout import Layout
from scripts.spec import ModelSpec

HANDLERS = Path(handlers.__file__).parent
HANDLER_SOURCES = sorted(HANDLERS.rglob("*.py"))  # with its subpackages (formats/)


def copy_handlers(package: Path) -> None:
    """The run-time code into `package` (a .mar's or a Triton model's `handlers/`), as laid out
    here, so its imports stay `handlers.x` and `handlers.formats.x`."""
    for source in HANDLER_SOURCES:
        target = package / source.relative_to(HANDLERS)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def serving_plan(spec: ModelSpec, layout: Layout, fmt: str | None = None) -> ServingPlan:
    """The plan for serving `fmt` (default: the spec's serving format)."""
    task = spec.task
    labels = (
        [line for line in layout.source(task.labels).read_text().splitlines() if line]
        if task.labels
        else []
    )
    return ServingPlan(
        name=spec.name,
        version=spec.version,
        format=fmt or spec.serving.format,
        inputs=spec.inputs,
        outputs=spec.outputs,
        task=TaskPlan(
            kind=task.kind,
            output=task.output,
            top_k=min(task.top_k, len(labels) or 1),
            labels=labels,
            generation=served_generation(spec, layout),
            embedding_output=task.embedding_output,
            normalize=task.normalize,
        ),
        preprocess=task.preprocess,
        assets=task.preprocess.inline(layout.root),
        batching=spec.batching,
        serving=spec.serving,
    )


def plan_fingerprint(
    spec: ModelSpec, layout: Layout, plan: ServingPlan, *extra: object, code: Sequence[Path] = ()
) -> str:
    """One hash over the plan (labels and assets inlined), its input files, the export's
    stamp, the run-time code shipped with it and the runtime's own build code."""
    files = [*spec.input_files(layout.root), layout.artifact(spec).stamp, *HANDLER_SOURCES, *code]
    return fingerprint({"plan": plan.model_dump(mode="json"), "extra": list(extra)}, files)
