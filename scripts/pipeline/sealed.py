"""A built version is immutable: once `make export` has built version n of a model, building it
again from other inputs (source, weights, training settings, tensors or pre-processing) is
refused unless forced; the fix is a new version under `versions:`. Rebuilding from the same
inputs (new build code, a deleted artifact) is allowed: it gives the same model.

The record is artifacts/<model>/<version>/version.json, written after each export."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.pipeline.fingerprint import file_digest, source_file
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, ModelSpec


def identity(spec: ModelSpec, layout: Layout) -> dict:
    """What makes this version this model: its settings and the files its weights come from (a
    checkpoint you gave it; or, trained here, the model's and the data's code and data files)."""
    files = (
        {}
        if spec.training is not None
        else {shown(p, layout): p for p in spec.model_files(layout.root) if p.name != "samples.npz"}
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


def shown(path: Path, layout: Layout) -> str:
    """A file's name in the record: relative to the spec's folder, or where it is (a Hugging Face
    folder or a checkpoint kept anywhere on disk)."""
    return str(path.relative_to(layout.root)) if path.is_relative_to(layout.root) else str(path)


# Where the model's files are is not what the model is: their contents are.
LOCATIONS = ("checkpoint", "exported", "pretrained", "tokenizer")


def comparable(record: dict) -> dict:
    """The record as two builds are compared: the source without its paths, the files as their
    contents (records written before this rule compare the same way)."""
    source = record.get("source")
    if isinstance(source, dict):
        source = {k: v for k, v in source.items() if k not in LOCATIONS}
    files = record.get("files")
    if isinstance(files, dict):
        files = sorted(files.values(), key=str)
    return {**record, "source": source, "files": files}


def refuse_changed(spec: ModelSpec, layout: Layout, force: bool = False) -> None:
    """BuildError when this version was built before from other inputs (unless forced)."""
    record = layout.artifact(spec).record
    if force or not record.exists():
        return
    built, now = comparable(json.loads(record.read_text())), comparable(identity(spec, layout))
    changed = [key for key in now if built.get(key) != now[key]]
    if changed:
        raise BuildError(
            f"{spec.name} version {spec.version} was built from other inputs ({', '.join(changed)} "
            "changed) and a built version is immutable: add the change as a new version under "
            "`versions:` in the spec, or rebuild this one anyway with FORCE=1"
        )


def seal(spec: ModelSpec, layout: Layout) -> None:
    layout.artifact(spec).record.write_text(json.dumps(identity(spec, layout), indent=1) + "\n")
