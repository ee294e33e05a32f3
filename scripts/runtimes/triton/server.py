"""Start, wait for and stop the real tritonserver (from the nvidia-pytriton wheel) on a
generated repository.

Each instance lives in its own work directory (backends/, admin_key, triton.pid, triton.log),
so several can run side by side: `make serve RUNTIME=triton` uses the layout's run state
(`layout.state("triton")`), the tests a temporary one with free ports. Every model is loaded
explicitly (--model-control-mode=explicit); the model-repository API (load/unload) needs the
admin key written to <workdir>/admin_key.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import requests

from handlers.metrics import CLIENT_HEADER
from scripts.runtimes.processes import read_pid, stop_process, tail, wait_for_models
from scripts.spec.errors import BuildError

STAGING = "staging"
ADMIN_HEADER = "admin-key"  # HTTP
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # gRPC metadata
# Behind the admin key, HTTP and gRPC alike: loading models, registering shared memory (what the
# 2025 chained exploit of the Python backend used, NVIDIA bulletin 5687), changing log and trace
# settings, and reading statistics. Inference, health, metadata and model config stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace", "statistics")
# Servers this process started: a dead child stays a zombie (its pid still "alive") until
# waited for, so these are polled rather than probed by pid.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass
class Triton:
    workdir: Path
    ports: Ports
    admin_key: str | None = None
    waited_s: float = 0.0  # seconds start-up took until READY
    restricted: tuple[str, ...] = RESTRICTED_APIS  # the APIs behind the admin key

    @property
    def http_url(self) -> str:  # tritonclient form: host:port, no scheme
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.ports.metrics}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_address}/metrics"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "triton.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "triton.log"


def wheel_dir() -> Path:
    """site-packages/pytriton/tritonserver: the server binary, backends and stubs."""
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def library_path() -> str:
    """The wheel's bundled libraries and Python's own libpython (the stub links it)."""
    bundled = wheel_dir().parents[1] / "nvidia_pytriton.libs"
    return os.pathsep.join(
        [str(bundled), sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH", "")]
    ).rstrip(os.pathsep)


def assemble_backends(folder: Path) -> Path:
    """<folder>/python: libtriton_python.so, its utils and the stub for this Python."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    source = wheel_dir() / "backends" / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(source / name, python / name)
    stub = (
        wheel_dir()
        / "python_backend_stubs"
        / f"{sys.version_info[0]}.{sys.version_info[1]}"
        / "triton_python_backend_stub"
    )
    if not stub.exists():
        raise BuildError(
            f"no Triton Python-backend stub for Python {sys.version_info[0]}.{sys.version_info[1]} "
            f"in {stub.parent.parent}; use a Python the nvidia-pytriton wheel supports"
        )
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return folder


def env() -> dict[str, str]:
    # The stub finds the venv through `python3` on PATH (pyvenv.cfg) and ignores PYTHONPATH.
    return {
        **os.environ,
        "LD_LIBRARY_PATH": library_path(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def repository_models(repo: Path) -> list[str]:
    """Every model directory of a generated repository (those with a config.pbtxt)."""
    return sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))


def command(server: Triton, repo: Path, models: list[str]) -> list[str]:
    restricted = f"{','.join(server.restricted)}:{ADMIN_HEADER}={server.admin_key}"
    return [
        str(wheel_dir() / "bin" / "tritonserver"),
        f"--model-repository={repo.resolve()}",
        # a rollout's candidate versions are loaded from here under their own name (versions.py)
        f"--model-repository={server.workdir / STAGING}",
        f"--backend-directory={server.workdir / 'backends'}",
        "--http-address=127.0.0.1",
        f"--http-port={server.ports.http}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={server.ports.grpc}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={server.ports.metrics}",
        "--metrics-config=summary_latencies=true",  # p50/p90/p99 per model: nv_*_summary_us
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in models],
        "--strict-readiness=true",
        "--disable-auto-complete-config",
        # a model that fails to load is reported by name; the others keep serving
        "--exit-on-error=false",
        f"--http-restricted-api={restricted}",
        # gRPC clients send the key as metadata "triton-grpc-protocol-" + the key's name.
        f"--grpc-restricted-protocol={restricted}",
        # the gateway's client name reaches the models as a request parameter (metrics' label)
        f"--http-header-forward-pattern={CLIENT_HEADER}",
        f"--grpc-header-forward-pattern={CLIENT_HEADER.lower()}",
    ]


def write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def start(
    repo: Path, models: list[str] | None, ports: Ports, workdir: Path, open_statistics: bool = False
) -> Triton:
    """Start tritonserver in the background (returns at once; see wait_ready). `models`
    defaults to every model of the repository; `open_statistics` leaves the statistics API
    out of the admin key's (bench: perf_analyzer reads it and sends no key over gRPC)."""
    restricted = tuple(a for a in RESTRICTED_APIS if not (open_statistics and a == "statistics"))
    admin_key = secrets.token_urlsafe(24)
    server = Triton(workdir.resolve(), ports, admin_key, restricted=restricted)
    if is_running(server):
        raise BuildError(f"tritonserver already runs from {workdir}; `make stop` first")
    models = models or repository_models(repo)
    if not models:
        raise BuildError(f"{repo}: no models (no */config.pbtxt); run `make triton-repo` first")
    shutil.rmtree(server.workdir, ignore_errors=True)
    server.workdir.mkdir(parents=True)
    assemble_backends(server.workdir / "backends")
    (server.workdir / STAGING).mkdir()
    write_secret(server.workdir / "admin_key", admin_key)
    with open(server.log_file, "wb") as log:
        # Its own session: `make serve` returns while the server keeps running.
        process = subprocess.Popen(
            command(server, repo, models),
            cwd=server.workdir,
            env=env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server.pid_file.write_text(f"{process.pid}\n")
    _children[process.pid] = process
    return server


def start_watchdog(server: Triton, repo: Path) -> int:
    """The stub watchdog (watchdog.py) beside this server, in its own session; returns its pid."""
    project = Path(__file__).resolve().parents[3]
    with open(server.workdir / "watchdog.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.runtimes.triton.watchdog"]
            + [
                str(a)
                for a in (server.workdir, repo.resolve(), server.ports.http, server.ports.metrics)
            ],
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env(), "PYTHONPATH": str(project)},
            start_new_session=True,
        )
    (server.workdir / "watchdog.pid").write_text(f"{process.pid}\n")
    _children[process.pid] = process
    return process.pid


def stop_watchdog(workdir: Path) -> None:
    watchdog = read_pid(workdir / "watchdog.pid")
    if watchdog is not None:
        os.kill(watchdog, signal.SIGTERM)
        child = _children.pop(watchdog, None)
        if child is not None:
            child.wait(10)
    (workdir / "watchdog.pid").unlink(missing_ok=True)


def attach(workdir: Path, ports: Ports = Ports()) -> Triton:
    """The instance running from workdir, with its admin key (for clients and `make stop`)."""
    key_file = workdir.resolve() / "admin_key"
    key = key_file.read_text().strip() if key_file.exists() else None
    return Triton(workdir.resolve(), ports, key)


def pid(server: Triton) -> int | None:
    value = read_pid(server.pid_file)
    child = _children.get(value) if value is not None else None
    return None if child is not None and child.poll() is not None else value


def is_running(server: Triton) -> bool:
    return pid(server) is not None


def answers_ok(server: Triton, path: str) -> bool:
    try:
        return requests.get(f"http://{server.http_url}{path}", timeout=5).status_code == 200
    except (requests.RequestException, OSError):
        return False


def model_ready(server: Triton, model: str) -> bool:
    return answers_ok(server, f"/v2/models/{model}/ready")


def live(server: Triton) -> bool:
    return answers_ok(server, "/v2/health/live")


def wait_ready(server: Triton, models: list[str], timeout_s: float = 120) -> float:
    """Block until every model is READY or failed; returns the seconds waited. The HTTP
    endpoint opens only once the start-up loads are done, so a model that is not READY on a
    live server has failed (ModelsFailed names it with its log lines). BuildError with the log
    tail on a timeout or a dead server."""
    return wait_for_models(
        "tritonserver",
        models,
        lambda m: model_ready(server, m),
        lambda: is_running(server),
        lambda: log_tail(server),
        timeout_s,
        failed=lambda m: live(server) and not model_ready(server, m),
        log_files=[server.log_file],
    )


def log_tail(server: Triton, lines: int = 40) -> str:
    return tail([server.log_file], lines)


def stop(workdir: Path, timeout_s: float = 30) -> bool:
    """Stop the instance that runs from workdir (never another one); True if one was running."""
    server = Triton(workdir.resolve(), Ports())
    stop_watchdog(server.workdir)
    process = pid(server)

    def terminate() -> None:
        if process is None:  # stop_process calls this only for a running pid
            return
        os.kill(process, signal.SIGTERM)
        child = _children.pop(process, None)
        if child is not None:
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    stopped = stop_process(process, terminate, timeout_s)
    server.pid_file.unlink(missing_ok=True)
    return stopped
