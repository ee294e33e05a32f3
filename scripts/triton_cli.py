"""The Triton steps' command-line functions and `serve`/`stop` hooks. Registered in scripts/cli.py:

    app.command("triton-repo")(triton_repo)
    app.command("perf")(perf)

and serve_triton / stop_triton called from scripts/serve.py for `--runtime triton`.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from scripts.cli import ForceOption, ModelOption, SpecOption, console, selected_models, user_errors
from scripts.spec import ModelSpec

REPO_DIR = Path("triton_repo")


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
                out: Annotated[Path, typer.Option("--out", help="Repository folder.")] = REPO_DIR):
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


def serve_triton(models: list[ModelSpec], root: Path, timeout_s: float = 300) -> list[str]:
    """Generate what is missing, start tritonserver, wait for READY; returns lines to print."""
    from scripts import triton_server
    from scripts.triton_repo import build_repository, model_dirs

    repo = root / REPO_DIR
    build_repository(models, root, repo)
    names = [d.name for m in models for d in model_dirs(m, repo)]
    server = triton_server.start(repo, names, triton_server.Ports(), root / triton_server.DEFAULT_WORKDIR)
    try:
        waited = triton_server.wait_ready(server, names, timeout_s)
    except Exception:
        triton_server.stop(server.workdir)
        raise
    workdir = server.workdir.relative_to(root.resolve())
    return [
        f"tritonserver READY in {waited:.1f}s: {', '.join(names)}",
        f"  HTTP     http://{server.http_url}/v2/models/<model>/infer",
        f"  gRPC     {server.grpc_url}",
        f"  metrics  {server.metrics_url}",
        f"  admin    model-repository API needs header '{triton_server.ADMIN_HEADER}: <key>' "
        f"(gRPC: '{triton_server.GRPC_ADMIN_HEADER}'); key in {workdir}/admin_key",
        f"  log      {workdir}/triton.log",
    ]


def stop_triton(root: Path) -> list[str]:
    from scripts import triton_server

    stopped = triton_server.stop(root / triton_server.DEFAULT_WORKDIR)
    return ["tritonserver stopped" if stopped else "tritonserver was not running"]


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
