"""The Triton steps' command-line functions. Registered in scripts/cli.py:

    app.command("triton-repo")(triton_repo)
    app.command("perf")(perf)

Starting and stopping tritonserver for `make serve` lives in scripts/serve.py, beside TorchServe.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from scripts.cli import ForceOption, ModelOption, SpecOption, console, selected_models, user_errors
from scripts.serve import TRITON_REPO
from scripts.spec import ModelSpec



class Backend(str, Enum):
    python = "python"
    onnxruntime = "onnxruntime"
    pytorch = "pytorch"


class Protocol(str, Enum):
    http = "http"
    grpc = "grpc"
    both = "both"


BackendOption = Annotated[Backend, typer.Option(
    "--backend", help="python runs here; onnxruntime / pytorch are for NVIDIA's containers (checked offline).")]


@user_errors
def triton_repo(spec: SpecOption = Path("models.yaml"), model: ModelOption = None, force: ForceOption = False,
                backend: BackendOption = Backend.python,
                out: Annotated[Path, typer.Option("--out", help="Repository folder.")] = TRITON_REPO):
    """Write the Triton model repository (config.pbtxt, versions, ensembles) from the spec and artifacts."""
    from scripts.triton_repo import build_repository, model_dirs

    root, models = selected_models(spec, model)
    out = out if out.is_absolute() else root / out
    rebuilt = build_repository(models, root, out, backend.value, force)
    table = Table("model", "status", "Triton models")
    for m in models:
        table.add_row(m.name, f"written ({backend.value})" if rebuilt[m.name] else "up to date",
                      ", ".join(d.name for d in model_dirs(m, out)))
    console.print(table)


def perf_rows(spec: ModelSpec, root: Path, served: str) -> dict:
    """Request data: golden inputs for the tensor model; for an ensemble, the golden examples
    turned back into what a client sends (text; images are bytes, sent base64)."""
    import numpy as np

    from scripts.export import artifact_dir
    from scripts.perf import golden_rows
    from scripts.runtime_config import runtime_config
    from scripts.triton_repo import ENSEMBLE_INPUTS, encoded_example

    rows = golden_rows(artifact_dir(spec, root), spec.tensor_names)
    if served == spec.name:
        return rows
    config = runtime_config(spec, root)
    examples = [encoded_example(spec, config, row) for row in rows[spec.inputs[0].name]]
    return {ENSEMBLE_INPUTS[spec.task.preprocess.kind]: np.array(examples, dtype=np.object_)}


@user_errors
def perf(spec: SpecOption = Path("models.yaml"),
         model: Annotated[str, typer.Option("--model", "-m", help="Served model: a spec name or <name>_ensemble.")] = "digits_cnn",
         protocol: Annotated[Protocol, typer.Option("--protocol")] = Protocol.both,
         concurrency: Annotated[Optional[list[int]], typer.Option("--concurrency", "-c", help="Repeat for several.")] = None,
         http_port: int = 8000, grpc_port: int = 8001):
    """perf_analyzer against a served model: throughput and p50/p99 latency per concurrency."""
    from scripts.errors import BuildError
    from scripts.perf import run

    root, models = selected_models(spec, None)
    owner = next((m for m in models if model in (m.name, f"{m.name}_ensemble")), None)
    if owner is None:
        raise BuildError(f"unknown model {model!r}; serve one of the spec's models or <name>_ensemble")
    rows = perf_rows(owner, root, model)
    table = Table("model", "protocol", "concurrency", "infer/s", "p50 ms", "p99 ms")
    protocols = ["http", "grpc"] if protocol == Protocol.both else [protocol.value]
    for proto in protocols:
        port = http_port if proto == "http" else grpc_port
        for r in run(model, f"127.0.0.1:{port}", proto, concurrency or [1, 16], rows, root / "build" / "perf"):
            table.add_row(model, proto, str(r["concurrency"]), f"{r['throughput']:.1f}",
                          f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}")
    console.print(table)
