"""The build steps' commands: check, train, export, archive, triton-repo, verify-artifacts."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scripts.cli.common import (
    ForceOption,
    ModelOption,
    SpecOption,
    app,
    console,
    per_model,
    selected_models,
    user_errors,
)


@app.command()
@user_errors
def check(spec: SpecOption = Path("models.yaml")):
    """Validate the spec, list its models, and say what each runtime cannot represent exactly."""
    from scripts.pipeline.plan import serving_plan
    from scripts.runtimes.registry import RUNTIMES

    root, models = selected_models(spec, None)
    for m in models:
        served = "".join(f", {r} {s.format}" for r, s in m.per_runtime.items() if s.format)
        console.print(f"{m.name} v{m.version}: {m.task.kind}, formats {m.export.formats}, serves {m.serving.format}"
                      + (f" ({served[2:]})" if served else ""))
    for m in models:
        for runtime in RUNTIMES.values():
            try:
                plan = serving_plan(m.for_runtime(runtime.name), root)
            except OSError:  # assets that `make train` writes are not there yet
                break
            for warning in runtime.translate(plan).warnings:
                console.print(f"[yellow]warning:[/] {runtime.title}: {warning}", highlight=False)


@app.command()
@user_errors
def train(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Train every model that has a `training` section (fixed seeds, incremental)."""
    from scripts.pipeline.train import train_model

    root, models = selected_models(spec, model)

    def row(m, say):
        if m.training is None:
            return "no training section", f"uses {m.source.checkpoint or m.source.exported}"
        result = train_model(m, root, force)
        made = "initialised" if m.training.data is None else "trained"
        return ("up to date" if result.skipped else made,
                ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items()))

    per_model("train", models, ["status", "held-out metrics"], row)


@app.command()
@user_errors
def export(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Export each model to the spec's formats and verify them against eager PyTorch."""
    from scripts.pipeline.export import export_model
    from scripts.pipeline.verify import worst_errors

    root, models = selected_models(spec, model)

    def row(m, say):
        result = export_model(m, root, force, on_format=say)
        left_out = [f"{fmt} left out: {reason}" for fmt, reason in result.report.get("skipped", {}).items()]
        if "int8" in result.report:
            int8, gate = result.report["int8"], result.report["int8"]["gate"]
            left_out.append(f"onnx_int8 ({int8['method']}, {int8['bytes'] / int8['fp32_bytes']:.0%} of fp32): "
                            f"{gate['metric']} {gate['fp32']:.4f} -> {gate['int8']:.4f}")
        return ("up to date" if result.skipped else "exported + verified",
                "\n".join([", ".join(f"{fmt} {err:.2e}" for fmt, err in worst_errors(result.report).items()),
                           *left_out]))

    per_model("export", models, ["status", "worst |error| per format (batch sizes 1, 3, max)"], row)


def print_build(rows, columns: tuple[str, str]) -> None:
    table = Table("model", *columns, "warnings")
    for r in rows:
        table.add_row(r.model, r.status, r.detail, "\n".join(r.warnings) or "-")
    console.print(table)


@app.command()
@user_errors
def archive(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False):
    """Build one TorchServe .mar per model into model_store/ (incremental)."""
    from scripts.runtimes.registry import RUNTIMES
    from scripts.runtimes.serving import build_signed

    root, models = selected_models(spec, model)
    print_build(build_signed(RUNTIMES["torchserve"], models, root, force=force), ("status", "archive"))


class Backend(str, Enum):
    python = "python"
    onnxruntime = "onnxruntime"
    pytorch = "pytorch"


BackendOption = Annotated[Backend, typer.Option(
    "--backend", help="python runs here; onnxruntime / pytorch are for NVIDIA's containers (checked offline).")]


@app.command("triton-repo")
@user_errors
def triton_repo(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False,
                backend: BackendOption = Backend.python,
                out: Annotated[Path, typer.Option("--out", help="Repository folder.")] = Path("triton_repo")):
    """Write the Triton model repository (config.pbtxt, versions, ensembles) from the spec and artifacts."""
    from scripts.pipeline.paths import TRITON_REPO
    from scripts.runtimes.registry import RUNTIMES
    from scripts.runtimes.serving import build_signed

    root, models = selected_models(spec, model)
    out = out if out.is_absolute() else root / out
    if out == root / TRITON_REPO:  # the served repository: signed when a key is configured
        rows = build_signed(RUNTIMES["triton"], models, root, force=force, backend=backend.value)
    else:
        rows = RUNTIMES["triton"].build(models, root, force, backend.value, out)
    print_build(rows, ("status", "Triton models"))


@app.command("verify-artifacts")
@user_errors
def verify_artifacts(spec: SpecOption = Path("models.yaml"), model: ModelOption = None):
    """Refuse any .mar whose files do not match its SHA-256 manifest, and (with
    TORCHSHIP_SIGNING_PUBLIC_KEY set) any served artifact unsigned or changed since signed."""
    from scripts.pipeline import signing
    from scripts.pipeline.paths import MODEL_STORE
    from scripts.kserve.bundle import OUT as KSERVE_OUT
    from scripts.runtimes.registry import RUNTIMES
    from scripts.runtimes.torchserve.archive import mar_path, verify_archive
    from scripts.spec import BuildError

    root, models = selected_models(spec, model)
    problems = []
    for m in models:
        found = verify_archive(mar_path(m, root / MODEL_STORE))
        problems += found
        console.print(f"{m.name}.mar: " + ("[red]REFUSED[/]" if found else "[green]intact[/]"))
    key = signing.configured_key(signing.PUBLIC_KEY_ENV)
    trees = [root / KSERVE_OUT / name for name in RUNTIMES if (root / KSERVE_OUT / name).is_dir()]
    signed = [a for runtime in RUNTIMES.values() for a in runtime.signed_artifacts(models, root)] + trees
    for artifact in signed if key else []:
        found = signing.problems(artifact, key)
        problems += found
        verdict = "[red]REFUSED[/]" if found else "[green]signature verified[/]"
        console.print(f"{artifact.relative_to(root)}: {verdict}")
    if problems:
        raise BuildError(problems)
