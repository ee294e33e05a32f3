"""A real Prometheus (Debian's `prometheus` package, installed by `make install`) on loopback,
scraping the running servers with a generated configuration and evaluating the generated rules.

Its run state (<workdir>: prometheus.yml, rules.yml, dashboard.json, data/, prometheus.pid,
prometheus.log) is the layout's `run/prometheus` for `make monitor`, a temporary folder in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from scripts.monitor.dashboard import dashboard
from scripts.monitor.rules import alert_rules
from scripts.runtimes.processes import read_pid, stop_process, tail
from scripts.spec import BuildError, ModelSpec

PORT = 9090
SCRAPE_INTERVAL = "5s"
INSTALL = "run `make install` (it installs Debian's prometheus package)"
_children: dict[int, subprocess.Popen] = {}  # started here: polled, never left as zombies


@dataclass(frozen=True)
class Prometheus:
    workdir: Path
    port: int = PORT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "prometheus.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def rules_file(self) -> Path:
        return self.workdir / "rules.yml"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} not found; {INSTALL}")
    return found


def scrape_config(targets: dict[str, str], rules: Path) -> dict:
    """One job per runtime (its name), scraping its metrics address."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }


def promtool(*args: str) -> str:
    """promtool's output; BuildError with it when promtool refuses."""
    done = subprocess.run([binary("promtool"), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def write_files(workdir: Path, targets: dict[str, str], models: list[ModelSpec], title: str):
    """prometheus.yml, rules.yml and dashboard.json, checked by promtool."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = Prometheus(workdir).rules_file
    rules.write_text(yaml.safe_dump(alert_rules(models, list(targets)), sort_keys=False))
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets, rules), sort_keys=False))
    promtool("check", "config", str(config))  # checks the rule file it names too
    dashboard_file = workdir / "dashboard.json"
    dashboard_file.write_text(json.dumps(dashboard(title, models), indent=2) + "\n")
    return config, rules, dashboard_file


def start(
    workdir: Path,
    targets: dict[str, str],
    models: list[ModelSpec],
    title: str,
    port: int = PORT,
    timeout_s: float = 60,
) -> Prometheus:
    """Write the files, start Prometheus in its own session and wait until it is ready."""
    server = Prometheus(workdir.resolve(), port)
    if read_pid(server.pid_file) is not None:
        raise BuildError(f"Prometheus already runs from {workdir}; `make stop` first")
    shutil.rmtree(server.workdir, ignore_errors=True)
    config, _, _ = write_files(server.workdir, targets, models, title)
    with open(server.log_file, "wb") as log:
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={server.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=server.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server.pid_file.write_text(f"{process.pid}\n")
    _children[process.pid] = process
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BuildError(f"Prometheus exited at start:\n{tail([server.log_file])}")
        try:
            if requests.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    stop(server.workdir)
    raise BuildError(f"Prometheus not ready after {timeout_s:g}s:\n{tail([server.log_file])}")


def stop(workdir: Path) -> bool:
    pid = read_pid(workdir / "prometheus.pid")
    child = _children.pop(pid, None) if pid is not None else None

    def terminate() -> None:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    if child is not None:  # ours: wait for it, so that no zombie reads as alive
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return True
    return stop_process(pid, terminate)


def query(server: Prometheus, expr: str) -> list[dict]:
    """An instant query's result vector ([{"metric": {...}, "value": [t, "v"]}])."""
    answer = requests.get(f"{server.url}/api/v1/query", params={"query": expr}, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def alerts(server: Prometheus) -> list[dict]:
    """The alerts pending or firing now."""
    answer = requests.get(f"{server.url}/api/v1/alerts", timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]["alerts"]
