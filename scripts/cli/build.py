"""The build steps' commands: check, train, export, archive, triton-repo, verify-artifacts."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from scripts.cli.common import (
    ForceOption,
    ModelOption,
    SpecOption,
    StepLog,
    app,
    console,
    selected_models,
    user_errors,
)
from scripts.pipeline import signing
from scripts.pipeline.ensure import Stage, ensure_built
from scripts.pipeline.plan import serving_plan
from scripts.pipeline.distill import student_shape
from scripts.pipeline.train import checkpoint_dir
from scripts.pipeline.verify import worst_errors
from scripts.runtimes.protocols import BuildOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.archive import mar_path, verify_archive
from scripts.spec import BuildError, ModelSpec


@app.command()
@user_errors
def check(spec: SpecOption = Path("models.yaml")):
    """Validate the spec, list its models, and say what each runtime cannot represent exactly."""
    layout, models = selected_models(spec, None)
    for m in models:
        served = "".join(f", {r} {s.format}" for r, s in m.per_runtime.items() if s.format)
        console.print(
            f"{m.name} v{m.version}: {m.task.kind}, formats {m.export.formats}, "
            f"serves {m.serving.format}" + (f" ({served[2:]})" if served else "")
        )
    for m in models:
        for runtime in RUNTIMES.values():
            try:
                plan = serving_plan(m.for_runtime(runtime.name), layout)
            except OSError:  # assets that `make train` writes are not there yet
                break
            for warning in runtime.artifacts.translate(plan).warnings:
                console.print(f"[yellow]warning:[/] {runtime.title}: {warning}", highlight=False)


def build_through(stage: Stage, spec: Path, model, force: bool, runtimes=(), options=None):
    """The one build path (scripts/pipeline/ensure.py), saying each step as it runs and ending
    with the table of steps; a model that cannot be built is left out (`failed_models` names it
    once the others' table is printed)."""
    layout, models = selected_models(spec, model)
    with StepLog(models, runtimes) as steps:
        built = steps.record(
            ensure_built(
                models,
                layout,
                list(runtimes),
                through=stage,
                force=force,
                options=options,
                say=steps.at,
                keep_going=True,
            )
        )
    return layout, models, built


def failed_models(built, models) -> None:
    """The models left out, each with its reason: the command fails after the others are built."""
    if built.failed:
        others = " (the others were)" if len(built.failed) < len(models) else ""
        raise BuildError([*built.failed.values(), f"not built: {', '.join(built.failed)}{others}"])


@app.command()
@user_errors
def train(
    spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False
):
    """Train every model that has a `training` section (fixed seeds, incremental)."""
    _, models, built = build_through("train", spec, model, force)
    table = Table("model", "status", "held-out metrics")
    results = {result.name: result for result in built.trained}
    for m in models:
        result = results.get(m.name)
        if result is None:
            continue
        if m.training is None:
            table.add_row(
                m.name, "no training section", f"uses {m.source.checkpoint or m.source.exported}"
            )
            continue
        made = "initialised" if m.training.data is None else "trained"
        table.add_row(
            m.name,
            "up to date" if result.skipped else made,
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.metrics.items()
            ),
        )
    console.print(table)
    failed_models(built, models)


@app.command()
@user_errors
def distill(
    model: Annotated[str, typer.Option("--model", "-m", help="The teacher's model.")],
    spec: SpecOption = Path("models.yaml"),
    student: Annotated[
        str | None,
        typer.Option("--student", help="The teacher's layers to keep, e.g. 0,2 (a version's)."),
    ] = None,
    force: ForceOption = False,
):
    """Build the model's distilled versions (training.distill): each student made from its
    teacher's layers, trained, gated on held-out perplexity, exported and verified."""
    layout, models = selected_models(spec, [model])
    teacher = models[0]
    build_students(
        teacher, layout, students(teacher, parse_layers(student) if student else None), force
    )


@app.command()
@user_errors
def prune(
    model: Annotated[str, typer.Option("--model", "-m", help="The model to prune.")],
    spec: SpecOption = Path("models.yaml"),
    heads: Annotated[
        float | None, typer.Option("--heads", help="Only the version pruning this share of heads.")
    ] = None,
    mlp: Annotated[
        float | None,
        typer.Option("--mlp", help="Only the version pruning this share of MLP channels."),
    ] = None,
    force: ForceOption = False,
):
    """Build the model's pruned versions (training.distill with heads and/or mlp): attention
    key/value groups and MLP channels of least weight cut away, recovered by training on the
    teacher's soft targets, gated on held-out perplexity, exported and verified."""
    layout, models = selected_models(spec, [model])
    build_students(models[0], layout, pruned(models[0], heads, mlp), force)


def build_students(teacher: ModelSpec, layout, chosen: list[int], force: bool) -> None:
    """Train, gate and export these student versions of `teacher`; print what each measured."""
    table = Table(
        "model", "version", "student", "perplexity teacher -> student", "tokens/s x (1, 16)"
    )
    for version in chosen:
        ensure_built([teacher], layout, version=version, through="export", force=force)
        # what distillation measured (a built version is sealed: not trained again)
        at = teacher.at_version(version)
        metrics = json.loads((checkpoint_dir(at, layout) / "metrics.json").read_text())
        table.add_row(
            teacher.name,
            str(version),
            student_shape(at.training.distill),  # pyright: ignore[reportOptionalMemberAccess, reportArgumentType]
            f"{metrics['teacher_perplexity']} -> {metrics['student_perplexity']} "
            f"({metrics['perplexity_ratio']}x)",
            f"{metrics['tokens_per_s_ratio_1']}, {metrics['tokens_per_s_ratio_16']}",
        )
    console.print(table)


def pruned(spec: ModelSpec, heads: float | None, mlp: float | None) -> list[int]:
    """The versions of `spec` that prune heads or MLP channels (these shares, when given)."""
    found = []
    for entry in spec.versions:
        training = spec.at_version(entry.version).training
        settings = training.distill if training else None
        if settings is None or not (settings.heads or settings.mlp):
            continue
        if heads in (None, settings.heads) and mlp in (None, settings.mlp):
            found.append(entry.version)
    if not found:
        after = max(spec.version_numbers) + 1
        raise BuildError(
            f"{spec.name} has no pruned version{' with those shares' if heads or mlp else ''}; "
            f"add one under versions: (docs/optimisation.md), e.g. - {{version: {after}, "
            f"training: {{distill: {{heads: {heads or 0.25}, mlp: {mlp or 0.3}, texts: "
            "'pkg.module:training_texts', held_out: 'pkg.module:held_out_texts'}}}"
        )
    return found


def parse_layers(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--student {text!r}: give layer indices, e.g. 0,2") from None


def students(spec: ModelSpec, layers: list[int] | None) -> list[int]:
    """The versions of `spec` distilled from a teacher (with these layers, when given)."""
    found = [
        v.version
        for v in spec.versions
        if (distill := spec.at_version(v.version).training)
        and distill.distill is not None
        and layers in (None, distill.distill.layers)
    ]
    if not found:
        after = max(spec.version_numbers) + 1
        raise BuildError(
            f"{spec.name} has no distilled version{f' keeping layers {layers}' if layers else ''}; "
            f"add one under versions: (docs/optimisation.md), e.g. - {{version: {after}, training: "
            f"{{distill: {{layers: {layers or [0, 2]}, texts: 'pkg.module:training_texts', "
            "held_out: 'pkg.module:held_out_texts'}}}"
        )
    return found


@app.command()
@user_errors
def export(
    spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False
):
    """Export each model to the spec's formats and verify them against eager PyTorch."""
    _, models, built = build_through("export", spec, model, force)
    table = Table("model", "status", "worst |error| per format (batch sizes 1, 3, max)")
    for result in built.exported:
        left_out = [
            f"{fmt} left out: {reason}" for fmt, reason in result.report.get("skipped", {}).items()
        ]
        if "summary" in result.report.get("int8", {}):  # a language model's int8 gate
            left_out.append(result.report["int8"]["summary"])
        elif "int8" in result.report:
            int8, gate = result.report["int8"], result.report["int8"]["gate"]
            left_out.append(
                f"onnx_int8 ({int8['method']}, {int8['bytes'] / int8['fp32_bytes']:.0%} of fp32): "
                f"{gate['metric']} {gate['fp32']:.4f} -> {gate['int8']:.4f}"
            )
        errors = ", ".join(f"{fmt} {err:.2e}" for fmt, err in worst_errors(result.report).items())
        errors = errors or "\n".join(
            f"{k}: {v}" for k, v in result.report.get("checks", {}).items()
        )
        table.add_row(
            result.name,
            "up to date" if result.skipped else "exported + verified",
            "\n".join([errors, *left_out]),
        )
    console.print(table)
    failed_models(built, models)


def print_build(rows, columns: tuple[str, str]) -> None:
    table = Table("model", *columns, "warnings")
    for r in rows:
        table.add_row(r.model, r.status, r.detail, "\n".join(r.warnings) or "-")
    console.print(table)


class Backend(str, Enum):
    python = "python"
    onnxruntime = "onnxruntime"
    pytorch = "pytorch"


BackendOption = Annotated[
    Backend,
    typer.Option(
        "--backend",
        help="Triton: python runs here; onnxruntime / pytorch are for NVIDIA's containers "
        "(checked offline).",
    ),
]
OutFolder = Annotated[
    Optional[Path],
    typer.Option(
        "--to", help="Write the artifact into this folder instead (not served, not signed)."
    ),
]


def build_step(runtime):
    """`archive` (TorchServe) / `triton-repo` (Triton): train and export what is stale, then
    package for that runtime."""

    def step(
        spec: SpecOption = Path("models.yaml"),
        model: ModelOption = None,
        force: ForceOption = False,
        backend: BackendOption = Backend.python,
        to: OutFolder = None,
    ):
        options = BuildOptions(force=force, backend=backend.value, out=to and to.resolve())
        _, models, built = build_through("package", spec, model, force, [runtime], options)
        print_build(built.packaged.get(runtime.name, []), ("status", runtime.title))
        failed_models(built, models)

    step.__doc__ = (
        f"Build what {runtime.title} serves from the spec and verified exports (incremental)."
    )
    return step


def register_build_steps() -> None:
    for runtime in RUNTIMES.values():
        app.command(runtime.build_step)(user_errors(build_step(runtime)))


register_build_steps()


@app.command("verify-artifacts")
@user_errors
def verify_artifacts(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Refuse any .mar whose files do not match its SHA-256 manifest, and (with
    TORCHSHIP_SIGNING_PUBLIC_KEY set) any served artifact unsigned or changed since signed."""
    layout, models = selected_models(spec, model)
    problems = []
    for m in models:
        found = verify_archive(mar_path(m, layout.model_store))
        problems += found
        console.print(f"{m.name}.mar: " + ("[red]REFUSED[/]" if found else "[green]intact[/]"))
    key = signing.configured_key(signing.PUBLIC_KEY_ENV)
    trees = [layout.kserve / name for name in RUNTIMES if (layout.kserve / name).is_dir()]
    signed = [
        a
        for runtime in RUNTIMES.values()
        for a in runtime.artifacts.signed_artifacts(models, layout)
    ]
    signed += trees
    for artifact in signed if key is not None else []:
        assert key is not None  # the loop runs only with a key
        found = signing.problems(artifact, key)
        problems += found
        verdict = "[red]REFUSED[/]" if found else "[green]signature verified[/]"
        console.print(f"{layout.shown(artifact)}: {verdict}")
    if problems:
        raise BuildError(problems)
