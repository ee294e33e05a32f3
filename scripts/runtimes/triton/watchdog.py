"""A watchdog beside tritonserver: a Python-backend stub process that dies (killed, out of memory)
is never restarted by Triton 2.51; its instance then hangs every request given to it while the
model still reads READY. Measured with 8 clients on digits_cnn: no answer at all for 12 s with
one instance; with two, one instance's batches lost.

Every POLL_S the watchdog lists the stubs under tritonserver (each one's model.py path names the
model and version). When a stub of a loaded version is gone and fewer stubs than the config's
instances remain, it reloads that model through the repository API with the versions it has
loaded and a new `watchdog_generation` parameter (Triton reloads only a changed config): the
new instances load beside the broken ones, traffic moves to them once READY, as in a rollout.
Each event goes to <workdir>/watchdog.jsonl.

Started by the Triton plugin for `make serve`'s server (and by tests), stopped with it:
  python -m scripts.runtimes.triton.watchdog <workdir> <repo> <http port> <metrics port>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton import versions
from scripts.runtimes.triton.model_config import ModelConfig

POLL_S = 0.2
STUB = "triton_python_backend_stub"
LOG = "watchdog.jsonl"


def stubs(server_pid: int | None) -> dict[int, tuple[str, int]]:
    """{stub pid: (model, version)} of every Python-backend stub under the server (none when
    it does not run: psutil.Process(None) would be this process)."""
    found: dict[int, tuple[str, int]] = {}
    if server_pid is None:
        return found
    for process in psutil.Process(server_pid).children(recursive=True):
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if len(command) > 1 and command[0].endswith(STUB) and command[1].endswith("model.py"):
            folder = Path(command[1]).parent
            if folder.name.isdigit():
                found[process.pid] = (folder.parent.name, int(folder.name))
    return found


class Watchdog:
    def __init__(self, server: tr.Triton, repo: Path):
        self.server, self.repo = server, repo
        self.known: dict[int, tuple[str, int]] = {}

    def config(self, model: str) -> ModelConfig:
        staged = self.server.workdir / tr.STAGING
        return versions.disk_config(staged if (staged / model).is_dir() else self.repo, model)

    def instances(self, model: str) -> int:
        return sum(group.count or 1 for group in self.config(model).instance_group) or 1

    def broken(self, alive: dict[int, tuple[str, int]]) -> set[str]:
        """Models with a loaded version that lost a stub and has fewer than its instances left."""
        lost = {key for pid, key in self.known.items() if pid not in alive}
        return {
            model
            for model, version in lost
            if version in versions.loaded(self.server, model)
            and sum(1 for key in alive.values() if key == (model, version)) < self.instances(model)
        }

    def recover(self, model: str) -> dict[str, Any]:
        started = time.monotonic()
        try:
            with versions.repository_lock(self.server):  # not in the middle of a rollout's switch
                loaded = versions.loaded(self.server, model)
                config = versions.with_versions(self.config(model), loaded)
                config.parameters["watchdog_generation"].string_value = str(time.time_ns())
                versions.load(self.server, config)
        except Exception as exc:  # reported, and tried again only if a stub dies again
            return {"event": "stub died: reload failed", "model": model, "error": str(exc)[:300]}
        return {
            "event": "stub died: model reloaded",
            "model": model,
            "versions": loaded,
            "reload_s": round(time.monotonic() - started, 3),
        }

    def poll(self) -> list[dict[str, Any]]:
        alive = stubs(tr.pid(self.server))
        try:
            events = (
                [self.recover(model) for model in sorted(self.broken(alive))] if self.known else []
            )
        finally:
            # The next poll compares with the stubs seen now, and with those seen before this
            # poll's work: a stub killed meanwhile must still count as lost next time (taking
            # only the later list missed a kill; CI saw no reload). A stub gone with a reload
            # is harmless: its model has its instances again.
            self.known = {**alive, **stubs(tr.pid(self.server))}
        return events


def log_event(server: tr.Triton, event: dict[str, Any]) -> None:
    with open(server.workdir / LOG, "a") as handle:
        handle.write(json.dumps({"time": time.time(), **event}) + "\n")


def run(server: tr.Triton, repo: Path) -> None:
    """Until the server stops; a dead server is logged (and reported by `make versions`)."""
    dog = Watchdog(server, repo)
    log_event(server, {"event": "watching", "server_pid": tr.pid(server)})
    while tr.is_running(server):
        try:
            for event in dog.poll():
                log_event(server, event)
        except Exception as exc:  # the server going away mid-poll, an API error: keep watching
            if tr.is_running(server):
                log_event(server, {"event": "poll failed", "error": str(exc)})
        time.sleep(POLL_S)
    log_event(server, {"event": "tritonserver is gone"})


def main(argv: list[str]) -> None:
    workdir, repo, http, metrics = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    server = tr.attach(workdir, tr.Ports(http=http, metrics=metrics))
    run(server, repo)


if __name__ == "__main__":
    main(sys.argv[1:])
