"""What the build left in a model version's artifact folder (no heavy imports: every step may
need these)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from scripts.pipeline.layout import Layout
from scripts.spec import ModelSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray


def exported_formats(spec: ModelSpec, layout: Layout) -> list[str]:
    """The formats `make export` produced and verified (with `formats: auto`, those that
    worked), from its stamp; the spec's list before anything was exported."""
    import json

    try:
        return list(json.loads(layout.artifact(spec).stamp.read_text())["formats"])
    except (OSError, ValueError, KeyError):
        return spec.export.wanted


def golden(spec: ModelSpec, layout: Layout) -> dict[str, NDArray[Any]]:
    """The golden model inputs saved by export: {input name: rows}."""
    import numpy as np

    with np.load(layout.artifact(spec).golden) as saved:
        return {t.name: saved[f"input.{t.name}"] for t in spec.inputs}


def golden_examples(spec: ModelSpec, layout: Layout, most: int) -> list[dict[str, NDArray[Any]]]:
    """Up to `most` golden requests' inputs: one row each for a batched model; the golden
    tensors whole, as one request, for a model without a batch axis."""
    rows = golden(spec, layout)
    if not spec.batching.max_batch_size:
        return [rows]
    count = min(most, len(next(iter(rows.values()))))
    return [{n: v[i : i + 1] for n, v in rows.items()} for i in range(count)]


def link_or_copy(source: str, target: str) -> str:
    """A hard link where source and target share a file system, else a copy: a staging folder
    that only reads a model's weights should not hold a second copy of them on disk (a
    language model's are hundreds of MB, and CI's disk is shared)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target
