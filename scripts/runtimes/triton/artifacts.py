"""Triton's artifact builder: the model repository in the layout's triton_repo/."""

from __future__ import annotations

from pathlib import Path

from handlers.plan import ServingPlan
from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.protocols import BuildOptions, BuildRow, Translation
from scripts.runtimes.triton.repository import (
    build_repository,
    build_version,
    model_dirs,
    model_names,
    python_format,
)
from scripts.runtimes.triton.settings import NAME, scheduling
from scripts.spec import ModelSpec


class TritonArtifacts:
    """ArtifactBuilder: repository.py's models (tensor model, and pre/post/ensemble for
    encoded requests), on the Python backend here or a native one for NVIDIA's images."""

    def translate(self, plan: ServingPlan) -> Translation:
        return scheduling(plan)

    def build(
        self, specs: list[ModelSpec], layout: Layout, options: BuildOptions
    ) -> list[BuildRow]:
        """`options.out`: another repository (a scratch one); `options.backend`: python (runs
        here), onnxruntime or pytorch (checked offline)."""
        out = options.out or layout.triton_repo
        rebuilt = build_repository(specs, layout, out, options.backend, options.force)
        return [
            BuildRow(
                spec.name,
                f"written ({options.backend})" if rebuilt[spec.name] else "up to date",
                ", ".join(model_names(spec)),
                self.translate(serving_plan(spec.for_runtime(NAME), layout)).warnings,
            )
            for spec in specs
        ]

    def build_version(self, spec: ModelSpec, version: int, layout: Layout) -> BuildRow:
        """<name>/<version>/ beside the first version's (Python backend)."""
        built = build_version(spec, version, layout, layout.triton_repo)
        return BuildRow(
            spec.name, "written (python)" if built else "up to date", f"{spec.name}/{version}/"
        )

    def served_names(self, spec: ModelSpec) -> list[str]:
        return model_names(spec)

    def served_format(self, spec: ModelSpec, layout: Layout) -> str:
        return python_format(spec.for_runtime(NAME), layout, None)

    def signed_artifacts(self, specs: list[ModelSpec], layout: Layout) -> list[Path]:
        return [d for spec in specs for d in model_dirs(spec, layout.triton_repo) if d.exists()]
