"""A built version is immutable: once `make export` has built version n of a model, building it
again from other inputs (source, weights, training settings, tensors or pre-processing) is
refused unless forced; the fix is a new version under `versions:`. Rebuilding from the same
inputs (new build code, a deleted artifact) is allowed: it gives the same model.

The record is artifacts/<model>/<version>/version.json, written after each export."""

from __future__ import annotations

import json

from scripts.pipeline.fingerprint import file_digest, source_file
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, ModelSpec

RECORD = "version.json"


def identity(spec: ModelSpec, layout: Layout) -> dict:
    """What makes this version this model: its settings and the files its weights come from (a
    checkpoint you gave it; or, trained here, the model's and the data's code and data files)."""
    files = (
        {}
        if spec.training is not None
        else {
            str(p.relative_to(layout.root)): p
            for p in spec.model_files(layout.root)
            if p.name != "samples.npz"
        }
    )
    code = {}
    if spec.training is not None:
        code = {
            target: source_file(target)
            for target in (spec.source.module, spec.training.data, spec.training.script)
            if target
        }
        for folder in spec.training.data_files:
            path = layout.source(folder)
            found = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            files.update(
                {
                    str(folder / f.relative_to(path)) if path.is_dir() else str(folder): f
                    for f in found
                }
            )
    return {
        "source": spec.source.model_dump(mode="json"),
        "training": spec.training and spec.training.fingerprinted(),
        "tensors": [t.model_dump(mode="json") for t in [*spec.inputs, *spec.outputs]],
        "preprocess": spec.task.preprocess.model_dump(mode="json"),
        "code": {name: file_digest(path) for name, path in code.items()},
        "files": {
            name: file_digest(path) if path.exists() else None for name, path in files.items()
        },
    }


def refuse_changed(spec: ModelSpec, layout: Layout, force: bool = False) -> None:
    """BuildError when this version was built before from other inputs (unless forced)."""
    record = layout.artifact_dir(spec) / RECORD
    if force or not record.exists():
        return
    built, now = json.loads(record.read_text()), identity(spec, layout)
    changed = [key for key in now if built.get(key) != now[key]]
    if changed:
        raise BuildError(
            f"{spec.name} version {spec.version} was built from other inputs ({', '.join(changed)} "
            "changed) and a built version is immutable: add the change as a new version under "
            "`versions:` in the spec, or rebuild this one anyway with FORCE=1"
        )


def seal(spec: ModelSpec, layout: Layout) -> None:
    (layout.artifact_dir(spec) / RECORD).write_text(
        json.dumps(identity(spec, layout), indent=1) + "\n"
    )
