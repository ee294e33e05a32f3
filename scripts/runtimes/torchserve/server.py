"""Start, wait for and stop a real TorchServe on the generated model store.

Each instance lives in its own work directory (config, key_file.json, logs, and TEMP, which
holds TorchServe's pid file and worker sockets), so several can run side by side: `make serve`
uses the layout's run state (`layout.state("torchserve")`), the tests a temporary one with free
ports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from scripts.runtimes.torchserve.metrics_config import write_metrics_config
from scripts.runtimes.processes import read_pid, stop_process, tail, wait_for_models
from scripts.spec.errors import BuildError


@dataclass(frozen=True)
class Ports:
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071


@dataclass
class TorchServe:
    workdir: Path
    ports: Ports
    waited_s: float = 0.0  # seconds start-up took until READY
    stubs: Path | None = None  # where gRPC clients compile their stubs (default: the workdir's)

    @property
    def grpc_stubs(self) -> Path:
        return self.stubs or self.workdir / "grpc_stubs"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.ports.metrics}"

    @property
    def temp(self) -> Path:
        """TEMP: the pid file and the workers' Unix sockets. A socket path longer than the
        kernel's 108 bytes fails every worker ("AF_UNIX path too long"), so a deep work directory
        (a user's repository, pytest's tmp_path) gets a short folder in the system's temp."""
        inside = self.workdir / "tmp"
        if len(str(inside / ".ts.sock.65535")) <= 100:
            return inside
        digest = hashlib.sha1(str(self.workdir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"torchserve-{digest}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    def key(self, api: str) -> str:
        """The token for "inference" or "management" from key_file.json."""
        return json.loads(self.key_file.read_text())[api]["key"]

    def env(self) -> dict[str, str]:
        # TEMP moves TorchServe's pid file and sockets; the venv's bin must come first on
        # PATH so the Java frontend starts workers with this Python.
        return {
            **os.environ,
            "TEMP": str(self.temp),
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }


def render_config(
    template: Path,
    store: Path,
    models: list[str],
    ports: Ports,
    overrides: dict[str, str] | None = None,
) -> str:
    """config.properties with the model store, the archives to load (`models`: file names
    without .mar) and the ports filled in (and any `overrides`, e.g. enable_model_api=true
    for rollouts)."""
    store = store.resolve()
    values = {
        "inference_address": f"http://127.0.0.1:{ports.inference}",
        "management_address": f"http://127.0.0.1:{ports.management}",
        "metrics_address": f"http://127.0.0.1:{ports.metrics}",
        "grpc_inference_port": str(ports.grpc_inference),
        "grpc_management_port": str(ports.grpc_management),
        "model_store": str(store),
        # archives directly in this store only: no sub-folders, so no '..' way out, and no URLs
        # (backslashes doubled: Java's properties format reads "\\w" as "w")
        "allowed_urls": f"file://{re.escape(str(store))}/[\\w.-]+\\.mar".replace("\\", "\\\\"),
        "load_models": ",".join(f"{m}.mar" for m in models),
        **(overrides or {}),
    }
    lines: list[str] = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(
            f"{key}={values.pop(key)}" if key in values and not line.startswith("#") else line
        )
    lines += [f"{k}={v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def start(
    template: Path,
    store: Path,
    models: list[str],
    ports: Ports,
    workdir: Path,
    overrides: dict[str, str] | None = None,
    stubs: Path | None = None,
) -> TorchServe:
    """Start TorchServe in the background (returns at once; see wait_ready). `models` are
    the archives' file names without .mar (`digits_cnn`, `digits_cnn.v2`)."""
    server = TorchServe(workdir.resolve(), ports, stubs=stubs)
    if is_running(server):
        raise BuildError(f"TorchServe already runs from {workdir}; `make stop` first")
    shutil.rmtree(server.workdir, ignore_errors=True)
    shutil.rmtree(server.temp, ignore_errors=True)
    for folder in (server.temp, server.workdir / "logs"):
        folder.mkdir(parents=True)
    # an empty workflow store: `POST /workflows` (which enable_model_api=false leaves open in
    # 0.12) finds nothing to register, and no .war matches allowed_urls anyway
    workflows = server.workdir / "workflow_store"
    workflows.mkdir()
    config = server.workdir / "config.properties"
    metrics = write_metrics_config(server.workdir / "metrics.yaml")
    overrides = {
        "workflow_store": str(workflows),
        "metrics_config": str(metrics),
        **(overrides or {}),
    }
    config.write_text(render_config(template, store, models, ports, overrides))
    torchserve = Path(sys.executable).with_name("torchserve")
    with open(server.workdir / "logs" / "launcher.log", "wb") as log:
        subprocess.run(
            [str(torchserve), "--start", "--ncs", "--ts-config", str(config)],
            cwd=server.workdir,
            env=server.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return server


def pid(server: TorchServe) -> int | None:
    return read_pid(server.temp / ".model_server.pid")


def is_running(server: TorchServe) -> bool:
    return pid(server) is not None


def wait_ready(
    server: TorchServe, models: list[str], timeout_s: float = 300, version: int | None = None
) -> float:
    """Block until every model has a READY worker or has failed; returns the seconds waited.
    A model whose archive or worker failed (ModelsFailed names it with its log lines) leaves
    the others serving; on timeout or a dead server, BuildError with the log tails."""
    logs = log_files(server)
    return wait_for_models(
        "TorchServe",
        models,
        lambda m: model_ready(server, m, version),
        lambda: is_running(server),
        lambda: log_tail(server),
        timeout_s,
        failed=lambda m: load_failed(logs[-1], m),
        log_files=logs,
    )


WORKER_DEATHS_BEFORE_FAILED = 3  # a worker that died this often while starting will not recover


def load_failed(ts_log: Path, model: str) -> bool:
    """TorchServe logs a model whose archive cannot be registered, or whose worker died while
    loading it or before (it then retries the worker forever, with back-off)."""
    try:
        text = ts_log.read_text(errors="replace")
    except OSError:
        return False
    # the worker's "Failed to load model <m>, exception ...", the frontend's for a load job or
    # an archive
    logged = any(
        f"{message}{model}{end}" in text
        for message, end in (
            ("Failed to load model ", ","),
            ("Load model failed: ", ","),
            ("Failed to load model: ", ""),
        )
    )
    # worker threads are named W-<port>-<model>_<version>
    died = re.findall(
        rf"W-\d+-{re.escape(model)}_[^_\s]+ \S+WorkerThread - Backend worker error", text
    )
    return logged or len(died) >= WORKER_DEATHS_BEFORE_FAILED


def model_ready(server: TorchServe, model: str, version: int | None = None) -> bool:
    """A READY worker for the model's default version (or for `version`)."""
    path = f"/models/{model}" + (f"/{version}" if version is not None else "")
    try:
        # no key_file.json: token authorization off (KServe's config), or not written yet
        token = (
            {"Authorization": f"Bearer {server.key('management')}"}
            if server.key_file.exists()
            else {}
        )
        reply = requests.get(server.management_url + path, timeout=5, headers=token)
    except (requests.RequestException, OSError, ValueError, KeyError):
        return False  # not listening yet, or key_file.json being written
    if reply.status_code != 200:
        return False
    return any(
        w.get("status") == "READY" for entry in reply.json() for w in entry.get("workers", [])
    )


def requests_served(server: TorchServe, model: str, version: int) -> float:
    """ts_inference_requests_total for that model version, from the metrics API. TorchServe counts
    unversioned requests under model_version="default", so this counts the requests that named
    the version: what is left once it has not been the default since the rollout before."""
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ts_inference_requests_total{")
        and f'model_name="{model}"' in line
        and f'model_version="{version}"' in line
    )


def log_files(server: TorchServe) -> list[Path]:
    return [server.workdir / "logs" / n for n in ("model_log.log", "ts_log.log")]


def log_tail(server: TorchServe, lines: int = 40) -> str:
    return tail(log_files(server), lines)


def stop(workdir: Path, timeout_s: float = 30) -> bool:
    """Stop the instance that runs from workdir (never another one); True if one was running."""
    server = TorchServe(workdir.resolve(), Ports())
    torchserve = Path(sys.executable).with_name("torchserve")
    # --stop from the instance's own cwd and TEMP: it targets that pid file only.
    stopped = stop_process(
        pid(server),
        lambda: subprocess.run(
            [str(torchserve), "--stop"],
            cwd=server.workdir,
            env=server.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        ),
        timeout_s,
    )
    if not server.temp.is_relative_to(server.workdir):
        shutil.rmtree(server.temp, ignore_errors=True)
    return stopped
