"""Steps `serve` and `stop`: start the runtimes on what the build generated, wait until every
model is READY, and say where everything is. `serving()` reuses running servers (or starts
them for the duration) for the steps that need live endpoints (verify, bench)."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from scripts import torchserve_server, triton_server
from scripts.archive import archive_model
from scripts.spec import ModelSpec
from scripts.torchserve_server import Ports

TEMPLATE = Path("config.properties")
TRITON_REPO = Path("triton_repo")


def ports_from_config(template: Path) -> Ports:
    """The ports written in config.properties, so a user's edit there is honoured."""
    text = template.read_text()

    def port(key: str, default: int) -> int:
        match = re.search(rf"^{key}=.*?(\d+)\s*$", text, re.MULTILINE)
        return int(match.group(1)) if match else default

    defaults = Ports()
    return Ports(port("inference_address", defaults.inference), port("management_address", defaults.management),
                 port("metrics_address", defaults.metrics), port("grpc_inference_port", defaults.grpc_inference),
                 port("grpc_management_port", defaults.grpc_management))


def torchserve_instance(root: Path) -> torchserve_server.TorchServe:
    """The instance `make serve` runs (or would run) from build/torchserve."""
    return torchserve_server.TorchServe((root / torchserve_server.DEFAULT_WORKDIR).resolve(),
                                        ports_from_config(root / TEMPLATE))


def start_torchserve(models: list[ModelSpec], root: Path, timeout_s: float) -> tuple[torchserve_server.TorchServe, float]:
    """Archive what is missing, start TorchServe, wait for READY (stopping it on failure)."""
    store = root / "model_store"
    for spec in models:
        archive_model(spec, root, store)
    names = [m.name for m in models]
    instance = torchserve_instance(root)
    server = torchserve_server.start(root / TEMPLATE, store, names, instance.ports, instance.workdir)
    try:
        return server, torchserve_server.wait_ready(server, names, timeout_s)
    except Exception:
        torchserve_server.stop(server.workdir)
        raise


def ready_report(runtime: str, waited: float, models: list[str], endpoints: list[tuple[str, str]]) -> list[str]:
    """What `make serve` prints once a runtime is READY: its models, then where everything is."""
    width = max(len(label) for label, _ in endpoints)
    return [f"{runtime} READY in {waited:.1f}s: {', '.join(models)}",
            *[f"  {label.ljust(width)}  {where}" for label, where in endpoints]]


def serve_torchserve(models: list[ModelSpec], root: Path, timeout_s: float = 300) -> list[str]:
    server, waited = start_torchserve(models, root, timeout_s)
    workdir = server.workdir.relative_to(root.resolve())
    return ready_report("TorchServe", waited, [m.name for m in models], [
        ("inference", f"{server.inference_url}/predictions/<model>"),
        ("management", f"{server.management_url}/models"),
        ("metrics", f"{server.metrics_url}/metrics"),
        ("gRPC", f"127.0.0.1:{server.ports.grpc_inference} (inference), "
                 f"127.0.0.1:{server.ports.grpc_management} (management)"),
        ("tokens", f"{workdir}/key_file.json (\"inference\" and \"management\" keys; "
                   "send 'Authorization: Bearer <key>')"),
        ("logs", f"{workdir}/logs/")])


def start_triton(models: list[ModelSpec], root: Path, timeout_s: float) -> tuple[triton_server.Triton, list[str], float]:
    """Generate what is missing (Python backend: the one that runs here), start tritonserver,
    wait for READY (stopping it on failure)."""
    from scripts.triton_repo import build_repository, model_dirs

    repo = root / TRITON_REPO
    build_repository(models, root, repo)
    names = [d.name for m in models for d in model_dirs(m, repo)]
    server = triton_server.start(repo, names, triton_server.Ports(), root / triton_server.DEFAULT_WORKDIR)
    try:
        return server, names, triton_server.wait_ready(server, names, timeout_s)
    except Exception:
        triton_server.stop(server.workdir)
        raise


def serve_triton(models: list[ModelSpec], root: Path, timeout_s: float = 300) -> list[str]:
    server, names, waited = start_triton(models, root, timeout_s)
    workdir = server.workdir.relative_to(root.resolve())
    return ready_report("tritonserver", waited, names, [
        ("HTTP", f"http://{server.http_url}/v2/models/<model>/infer"),
        ("gRPC", server.grpc_url),
        ("metrics", server.metrics_url),
        ("admin", f"model-repository API needs header '{triton_server.ADMIN_HEADER}: <key>' "
                  f"(gRPC: '{triton_server.GRPC_ADMIN_HEADER}'); key in {workdir}/admin_key"),
        ("log", f"{workdir}/triton.log")])


def stop_all(root: Path) -> list[str]:
    stopped = torchserve_server.stop(root / torchserve_server.DEFAULT_WORKDIR)
    triton_stopped = triton_server.stop(root / triton_server.DEFAULT_WORKDIR)
    return ["TorchServe stopped" if stopped else "TorchServe was not running",
            "tritonserver stopped" if triton_stopped else "tritonserver was not running"]


def serve_runtimes(runtime: str, models: list[ModelSpec], root: Path, timeout_s: float) -> list[str]:
    lines = []
    if runtime in ("all", "torchserve"):
        lines += serve_torchserve(models, root, timeout_s)
    if runtime in ("all", "triton"):
        try:
            lines += serve_triton(models, root, timeout_s)
        except Exception:
            stop_all(root)  # all or nothing: never leave one runtime half-served
            raise
    return lines


@contextlib.contextmanager
def serving(models: list[ModelSpec], root: Path, timeout_s: float = 300):
    """(TorchServe, Triton) as `make serve` runs them: reused when already running, else
    started here and stopped again on the way out."""
    torchserve = torchserve_instance(root)
    triton = triton_server.attach(root / triton_server.DEFAULT_WORKDIR)
    started = []
    try:
        if not torchserve_server.is_running(torchserve):
            torchserve, _ = start_torchserve(models, root, timeout_s)
            started.append(lambda: torchserve_server.stop(torchserve.workdir))
        if not triton_server.is_running(triton):
            triton, _, _ = start_triton(models, root, timeout_s)
            started.append(lambda: triton_server.stop(triton.workdir))
        yield torchserve, triton
    finally:
        for stop in started:
            stop()
