"""The one build path: train, export (+ verify, + int8 behind its gate), package for each
runtime and sign just what is stale. The Makefile's steps, `serve`, `rollout`, `bench`, `kserve`,
`tune` and the tests all come through here; starting a server never builds.

Each stage is incremental on its own fingerprint (spec entry, checkpoint, code, data, assets),
so a second call costs seconds. A version once built is sealed: rebuilt from other inputs only
when forced (a new version number is the way to ship a change).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Literal

from scripts.pipeline import sealed, signing
from scripts.pipeline.export import ExportResult
from scripts.pipeline.layout import Layout
from scripts.pipeline.train import TrainResult, train_model
from scripts.runtimes.protocols import BuildOptions, BuildRow, Runtime
from scripts.spec import ModelSpec, UserError
from scripts.tasks import task_of

Stage = Literal["train", "export", "package"]
Say = Callable[[str, str, str], None]  # (stage, model, detail): what runs right now


@dataclass
class Built:
    """What one call found or did, stage by stage (rows in the order of the specs)."""

    trained: list[TrainResult] = field(default_factory=list)
    exported: list[ExportResult] = field(default_factory=list)
    packaged: dict[str, list[BuildRow]] = field(default_factory=dict)  # runtime name -> rows
    failed: dict[str, str] = field(default_factory=dict)  # model -> why (with keep_going)


def ensure_built(
    specs: list[ModelSpec],
    layout: Layout,
    runtimes: Sequence[Runtime] = (),
    version: int | None = None,
    through: Stage = "package",
    force: bool = False,
    options: BuildOptions | None = None,
    say: Say = lambda *_: None,
    keep_going: bool = False,
) -> Built:
    """Bring `specs` (at `version` when given: a rollout's candidate) up to `through` for
    `runtimes`; with a signing key configured, sign each artifact that was (re)built.
    `keep_going`: a model that cannot be built is left out with its reason in `failed` while
    the others are built (`make archive`, `make serve`); otherwise its error stops the call."""
    versions = [spec.at_version(version if version is not None else spec.version) for spec in specs]
    built = Built()
    for base, spec in zip(specs, versions):
        if version is not None and is_sealed(spec, layout) and not force:
            refuse_changed(spec, layout)  # a rollout never re-exports a built version
            continue
        with one_model(spec.name, built.failed, keep_going):
            for draft in drafts_of(base, spec):  # its folder goes into this version's
                train_one(draft, layout, False, say)
                export_one(draft, layout, False, say)
            trained = train_one(spec, layout, force, say)
            exported = export_one(spec, layout, force, say) if through != "train" else None
            built.trained.append(trained)
            built.exported += [exported] if exported else []
    if through == "package":
        options = options or BuildOptions(force=force)
        for runtime in runtimes:
            rows = built.packaged.setdefault(runtime.name, [])
            groups = [[s] for s in specs] if keep_going else [specs]  # alone: one fails alone
            for group in groups:
                if group[0].name in built.failed:
                    continue
                # per model (group): its time and outcome are its own; the detail: the runtime
                say("package", ", ".join(s.name for s in group), runtime.title)
                with one_model(group[0].name, built.failed, keep_going, runtime.title):
                    rows += package(runtime, group, version, layout, options)
    return built


@contextmanager
def one_model(name: str, failed: dict[str, str], keep_going: bool, where: str = ""):
    """With keep_going, a model's failure is recorded (named, with its reason) not raised."""
    try:
        yield
    except Exception as exc:
        if not keep_going:
            raise
        reason = "; ".join(exc.problems) if isinstance(exc, UserError) else failure(exc)
        failed[name] = (f"{where}: " if where else "") + (
            reason if reason.startswith(name) else f"{name}: {reason}"
        )


def failure(exc: Exception) -> str:
    """An error the build did not expect (the model's own code, a runtime's tool): one line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def drafts_of(base: ModelSpec, spec: ModelSpec) -> list[ModelSpec]:
    """The version that drafts for `spec` (speculative decoding), built before it."""
    generation = spec.task.generation
    if generation is None or generation.draft is None:
        return []
    return [base.at_version(generation.draft.version)]


def train_one(spec: ModelSpec, layout: Layout, force: bool, say: Say) -> TrainResult:
    if spec.training is None:
        return TrainResult(spec.name, True, {})
    say("train", spec.name, "")
    return train_model(spec, layout, force)


def export_one(spec: ModelSpec, layout: Layout, force: bool, say: Say) -> ExportResult:
    say("export", spec.name, "")
    return task_of(spec).export(spec, layout, force, lambda fmt: say("export", spec.name, fmt))


def package(
    runtime: Runtime,
    specs: list[ModelSpec],
    version: int | None,
    layout: Layout,
    options: BuildOptions,
) -> list[BuildRow]:
    """The runtime's artifact for these models (or one more version beside the others), then
    a signature for what was (re)built or is unsigned, when a signing key is configured."""
    first = [spec for spec in specs if version in (None, spec.version)]
    rows = runtime.artifacts.build(first, layout, options) if first else []
    served = list(first)
    if version is not None:  # the other specs get that version beside theirs
        later = [spec for spec in specs if spec not in first]
        rows += [runtime.artifacts.build_version(spec, version, layout) for spec in later]
        served += [spec.at_version(version) for spec in later]
    if options.out is None:  # a scratch repository elsewhere is not what serves: not signed
        rebuilt = {
            a
            for row, spec in zip(rows, served)
            if row.status != "up to date"
            for a in runtime.artifacts.signed_artifacts([spec], layout)
        }
        signing.sign_if_configured(runtime.artifacts.signed_artifacts(served, layout), rebuilt)
    return rows


def is_sealed(spec: ModelSpec, layout: Layout) -> bool:
    return layout.artifact(spec).record.exists()


def refuse_changed(spec: ModelSpec, layout: Layout) -> None:
    sealed.refuse_changed(spec, layout)


def refuse_unverified(runtimes: list[Runtime], specs: list[ModelSpec], layout: Layout) -> None:
    """With a public key configured, refuse to serve anything unsigned or changed since signed."""
    signing.refuse_unverified(
        [a for runtime in runtimes for a in runtime.artifacts.signed_artifacts(specs, layout)]
    )
