"""What the TorchServe and Triton launchers share: free ports, pid checks, waiting, log tails."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from scripts.spec.errors import BuildError


class Starting(Protocol):
    """A server being started (any runtime's): start-up sets the seconds it took to READY."""

    @property
    def workdir(self) -> Path: ...

    waited_s: float


StartingT = TypeVar("StartingT", bound=Starting)


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:  # 0 and -1 would signal a whole process group, or everything
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def read_pid(path: Path) -> int | None:
    """The pid recorded in `path` if that process still runs, else None."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if alive(value) else None


def tail(paths: list[Path], lines: int = 40) -> str:
    """The last lines of each existing log, headed by its path: what a failed start prints."""
    parts: list[str] = []
    for path in paths:
        if path.exists():
            content = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(content)} lines) ---\n" + "\n".join(content))
    return "\n".join(parts) or "(no logs written yet)"


class ModelsFailed(BuildError):
    """Some models failed to load; the runtime keeps serving the others (`server`, set by the
    plugin when any model is READY)."""

    def __init__(self, runtime: str, failed: dict[str, list[str]], waited_s: float):
        self.failed, self.waited_s = failed, waited_s
        self.server: Starting | None = None
        super().__init__(
            [
                f"{runtime}: model {name} failed to load; its log lines:\n"
                + "\n".join(f"    {line}" for line in lines or ["(none mention it)"])
                for name, lines in failed.items()
            ]
        )


ERROR_WORDS = re.compile(r"error|exception|fail|died|no such file|not found", re.IGNORECASE)


def lines_about(paths: list[Path], model: str, limit: int = 8) -> list[str]:
    """The last log lines that name `model` as a word of its own, or as TorchServe's worker tag
    (`W-9000-<model>_<version>-stdout`): why it failed."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(model)}(?:_[\d.]+-|\.mar\b|(?![\w.-]))")
    found = [
        line.strip()
        for path in paths
        if path.exists()
        for line in path.read_text(errors="replace").splitlines()
        if pattern.search(line) and "ACCESS_LOG" not in line
    ]  # not our own readiness polls
    errors = [line for line in found if ERROR_WORDS.search(line)]
    return [line[:600] for line in (errors or found)[-limit:]]


def wait_for_models(
    name: str,
    models: list[str],
    ready: Callable[[str], bool],
    running: Callable[[], bool],
    logs: Callable[[], str],
    timeout_s: float,
    failed: Callable[[str], bool] = lambda m: False,
    log_files: Sequence[Path] = (),
) -> float:
    """Poll until every model is ready or has failed; returns the seconds waited. ModelsFailed
    (the others keep serving) names the failed ones with their log lines; BuildError with the
    log tail when the server dies or the timeout passes."""
    started = time.monotonic()
    pending: list[str] = list(models)
    broken: list[str] = []
    while pending:
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise BuildError(f"{name}: {pending} not READY after {timeout_s:.0f}s\n{logs()}")
        if not running():
            raise BuildError(f"{name} exited during start-up\n{logs()}")
        pending = [m for m in pending if not ready(m)]
        broken += [m for m in pending if failed(m)]
        pending = [m for m in pending if m not in broken]
        if pending:
            time.sleep(0.25)
    if broken:
        raise ModelsFailed(
            name, {m: lines_about(list(log_files), m) for m in broken}, time.monotonic() - started
        )
    return time.monotonic() - started


def ready_or_stopped(
    server: StartingT, names: list[str], wait: Callable[[], float], stop: Callable[[], object]
) -> StartingT:
    """`server` once wait() says its models are READY; stopped again if start-up fails, except
    when only some models failed (ModelsFailed carries the server, serving the others)."""
    try:
        server.waited_s = wait()
    except ModelsFailed as exc:
        if len(exc.failed) == len(names):
            stop()
            raise
        server.waited_s, exc.server = exc.waited_s, server
        raise
    except Exception:
        stop()
        raise
    return server


def stop_process(pid: int | None, terminate: Callable[[], object], timeout_s: float = 30) -> bool:
    """Ask politely (terminate), wait, then SIGKILL; True if something was running."""
    if not alive(pid):
        return False
    terminate()
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid is not None and alive(pid):
        os.kill(pid, 9)
    return True
