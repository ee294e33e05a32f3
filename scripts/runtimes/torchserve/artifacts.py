"""TorchServe's artifact builder: one `.mar` per model version in the layout's model store."""

from __future__ import annotations

from pathlib import Path

from handlers.plan import ServingPlan
from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.protocols import BuildOptions, BuildRow, Translation
from scripts.runtimes.torchserve.archive import archive_model, mar_path
from scripts.runtimes.torchserve.settings import NAME, model_config_yaml
from scripts.spec import ModelSpec


class TorchServeArtifacts:
    """ArtifactBuilder: archives (archive.py), incremental, checked before they are kept."""

    def translate(self, plan: ServingPlan) -> Translation:
        return model_config_yaml(plan)

    def build(
        self, specs: list[ModelSpec], layout: Layout, options: BuildOptions
    ) -> list[BuildRow]:
        """`options.out`: another model store (a scratch one); `options.backend` is Triton's."""
        store = options.out or layout.model_store
        rows: list[BuildRow] = []
        for spec in specs:
            built = archive_model(spec, layout, store, options.force)
            warnings = self.translate(serving_plan(spec.for_runtime(NAME), layout)).warnings
            rows.append(
                BuildRow(
                    spec.name,
                    "archived" if built else "up to date",
                    str(layout.shown(mar_path(spec, store))),
                    warnings,
                )
            )
        return rows

    def build_version(self, spec: ModelSpec, version: int, layout: Layout) -> BuildRow:
        """Each version is its own archive (<name>.v<n>.mar) beside the others."""
        return self.build([spec.at_version(version)], layout, BuildOptions())[0]

    def served_names(self, spec: ModelSpec) -> list[str]:
        return [spec.name]

    def served_format(self, spec: ModelSpec, layout: Layout) -> str:
        return spec.for_runtime(NAME).serving.format

    def signed_artifacts(self, specs: list[ModelSpec], layout: Layout) -> list[Path]:
        return [mar_path(spec, layout.model_store) for spec in specs]
