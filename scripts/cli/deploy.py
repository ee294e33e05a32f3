"""Beyond one machine: `kserve` (bundles and manifests for KServe) and `sign` (every artifact)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from scripts.cli.build import Backend
from scripts.cli.common import ModelOption, SpecOption, app, console, selected_models, user_errors
from scripts.cli.serve import RuntimeOption
from scripts.kserve.bundle import make_bundles
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.signing import (
    PRIVATE_KEY_ENV,
    configured_key,
    sign as sign_artifacts,
    sign_if_configured,
)
from scripts.runtimes.registry import RUNTIMES, selected
from scripts.spec import BuildError, load_spec


@app.command()
@user_errors
def kserve(
    spec: SpecOption = Path("models.yaml"),
    model: ModelOption = None,
    runtime: RuntimeOption = "all",
    triton_backend: Annotated[
        Optional[Backend],
        typer.Option(
            "--triton-backend",
            help="onnxruntime / pytorch (NVIDIA's stock image) or python; "
            "default: the spec's kserve.triton_backend.",
        ),
    ] = None,
):
    """Write kserve/<runtime>/ (what KServe's runtime starts from) and the InferenceService
    manifests."""
    started = time.perf_counter()
    layout, models = selected_models(spec, model)
    spec_file = load_spec(spec)
    settings = spec_file.kserve
    if triton_backend:
        settings = settings.model_copy(update={"triton_backend": triton_backend.value})
    bundles, manifests = make_bundles(
        models, layout, selected(runtime), settings, access=spec_file.access
    )
    signed = sign_if_configured([b.tree for b in bundles])
    for b in bundles:
        console.print(
            f"{b.runtime}: {layout.shown(b.tree)}/ ({b.model_format}, {b.protocol}, "
            f"runtime {b.runtime_version}): {', '.join(b.models)}",
            highlight=False,
        )
    for path in manifests:
        console.print(f"  manifest {layout.shown(path)}", highlight=False)
    if signed:
        console.print(
            f"  signed: {', '.join(str(layout.shown(s)) for s in signed)}", highlight=False
        )
    console.print(f"make kserve took {time.perf_counter() - started:.1f}s", highlight=False)


@app.command()
@user_errors
def sign(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Sign every .mar, every Triton model folder and the KServe trees with
    TORCHSHIP_SIGNING_KEY."""
    key = configured_key(PRIVATE_KEY_ENV)
    if key is None:
        raise BuildError(
            f"{PRIVATE_KEY_ENV} is not set: point it at an elliptic-curve private key (PEM)"
        )
    layout, models = selected_models(spec, model)
    ensure_built(models, layout, list(RUNTIMES.values()))
    artifacts = [
        a
        for runtime in RUNTIMES.values()
        for a in runtime.artifacts.signed_artifacts(models, layout)
        if a.exists()
    ]
    artifacts += [layout.kserve / name for name in RUNTIMES if (layout.kserve / name).is_dir()]
    for signature in sign_artifacts(artifacts, key):
        console.print(f"signed {layout.shown(signature)}", highlight=False)
