"""Serving a model under other settings (the tuner's configurations, bench's int8 rows) without
touching what `make archive` / `make triton-repo` built: each variant is a spec entry of its
own, built by the runtime into a scratch output folder (the spec's inputs, other outputs) whose
artifacts are the model's own."""

from __future__ import annotations

import contextlib
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.measure.bench.setups import bench_of
from scripts.runtimes.processes import ModelsFailed
from scripts.runtimes.protocols import BuildOptions, StartOptions
from scripts.spec import ModelSpec


def scratch_layout(layout: Layout, folder: Path) -> Layout:
    """The spec's inputs, with every output under `folder`: the build writes there freely."""
    folder.mkdir(parents=True, exist_ok=True)
    return Layout(layout.root, folder.resolve())


def link_artifacts(spec: ModelSpec, variant: ModelSpec, layout: Layout, scratch: Layout) -> None:
    """The variant's artifacts are the model's own exported and verified files."""
    link = scratch.artifact_dir(variant)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(layout.artifact_dir(spec).resolve())


def int8_variant(spec: ModelSpec) -> ModelSpec:
    """The model served as its gated int8 ONNX (`<name>_int8`) on every runtime: a per_runtime
    format (AOTInductor on one runtime) does not apply to it."""
    per_runtime = {r: s.model_copy(update={"format": None}) for r, s in spec.per_runtime.items()}
    return spec.model_copy(
        update={
            "name": f"{spec.name}_int8",
            "per_runtime": per_runtime,
            "serving": spec.serving.model_copy(update={"format": "onnx_int8"}),
        }
    )


@contextlib.contextmanager
def serve_variants(
    runtime,
    pairs: list[tuple[ModelSpec, ModelSpec]],
    layout: Layout,
    scratch: Layout,
    workdir: Path,
):
    """(model, variant) pairs served together by one server of this runtime on free ports,
    their tensor models only; yields {variant name: LoadTarget, or why it failed to load (str)}
    and stops the server on exit, also when some variants failed."""
    for spec, variant in pairs:
        link_artifacts(spec, variant, layout, scratch)
    variants = [v for _, v in pairs]
    names = [runtime.artifacts.served_names(v)[0] for v in variants]
    runtime.artifacts.build(variants, scratch, BuildOptions())
    failed: dict[str, str] = {}
    try:
        server = runtime.server.start(
            variants,
            scratch,
            StartOptions(
                workdir=workdir / runtime.name / variants[0].name, free_ports=True, names=names
            ),
        )
    except ModelsFailed as exc:  # the others serve: measure them, report these
        if exc.server is None:
            raise
        server = exc.server
        failed = {
            name: f"{runtime.name}: failed to load: " + " | ".join(lines[-2:])
            for name, lines in exc.failed.items()
        }
    try:
        yield {
            v.name: (
                failed[runtime.artifacts.served_names(v)[0]]
                if runtime.artifacts.served_names(v)[0] in failed
                else bench_of(runtime).load_target(server, v, scratch, workdir / "data")
            )
            for v in variants
        }
    finally:
        runtime.server.stop(server.workdir)
