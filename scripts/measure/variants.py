"""Serving a model under other settings (the tuner's configurations, bench's int8 rows) without
touching what `make archive` / `make triton-repo` built: each variant is a spec entry of its
own, built by the runtime plugin in a scratch checkout whose artifacts are the model's own."""
from __future__ import annotations

import contextlib
from pathlib import Path

from scripts.pipeline.paths import artifact_dir
from scripts.runtimes.processes import ModelsFailed
from scripts.spec import ModelSpec

# Everything a scratch checkout shares with the real one, but what the build writes.
GENERATED = {"artifacts", "model_store", "triton_repo", "build", "reports", ".git", ".venv"}


def scratch_checkout(root: Path, folder: Path) -> Path:
    """A checkout where the build can write freely: links to everything but generated folders."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in root.resolve().iterdir():
        link = folder / entry.name
        if entry.name not in GENERATED and not link.exists():
            link.symlink_to(entry)
    return folder


def link_artifacts(spec: ModelSpec, variant: ModelSpec, root: Path, scratch: Path) -> None:
    """The variant's artifacts are the model's own exported and verified files."""
    link = artifact_dir(variant, scratch)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(artifact_dir(spec, root).resolve())


def int8_variant(spec: ModelSpec) -> ModelSpec:
    """The model served as its gated int8 ONNX (`<name>_int8`) on every runtime: a per_runtime
    format (AOTInductor on one runtime) does not apply to it."""
    per_runtime = {r: s.model_copy(update={"format": None}) for r, s in spec.per_runtime.items()}
    return spec.model_copy(update={"name": f"{spec.name}_int8", "per_runtime": per_runtime,
                                   "serving": spec.serving.model_copy(update={"format": "onnx_int8"})})


@contextlib.contextmanager
def serve_variants(runtime, pairs: list[tuple[ModelSpec, ModelSpec]], root: Path, scratch: Path, workdir: Path):
    """(model, variant) pairs served together by one server of this runtime on free ports,
    their tensor models only; yields {variant name: LoadTarget, or why it failed to load (str)}
    and stops the server on exit, also when some variants failed."""
    for spec, variant in pairs:
        link_artifacts(spec, variant, root, scratch)
    variants = [v for _, v in pairs]
    failed: dict[str, str] = {}
    try:
        server = runtime.start(variants, scratch, workdir / runtime.name / variants[0].name, free_ports=True,
                               names=[runtime.served_names(v)[0] for v in variants])
    except ModelsFailed as exc:      # the others serve: measure them, report these
        if exc.server is None:
            raise
        server = exc.server
        failed = {name: f"{runtime.name}: failed to load: " + " | ".join(lines[-2:])
                  for name, lines in exc.failed.items()}
    try:
        yield {v.name: (failed[runtime.served_names(v)[0]] if runtime.served_names(v)[0] in failed
                        else runtime.load_target(server, v, scratch, workdir / "data")) for v in variants}
    finally:
        runtime.stop(server)
