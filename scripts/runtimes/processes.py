"""What the TorchServe and Triton launchers share: free ports, pid checks, waiting, log tails."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable

from scripts.spec.errors import BuildError


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int | None) -> bool:
    if pid is None:
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
    parts = []
    for path in paths:
        if path.exists():
            content = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(content)} lines) ---\n" + "\n".join(content))
    return "\n".join(parts) or "(no logs written yet)"


def wait_for_models(name: str, models: list[str], ready: Callable[[str], bool], running: Callable[[], bool],
                    logs: Callable[[], str], timeout_s: float) -> float:
    """Poll until ready(model) holds for every model; returns the seconds waited. Fails with
    the log tail when the server dies or the timeout passes."""
    started = time.monotonic()
    pending = list(models)
    while pending:
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise BuildError(f"{name}: {pending} not READY after {timeout_s:.0f}s\n{logs()}")
        if not running():
            raise BuildError(f"{name} exited during start-up\n{logs()}")
        pending = [m for m in pending if not ready(m)]
        if pending:
            time.sleep(0.25)
    return time.monotonic() - started


def stop_process(pid: int | None, terminate: Callable[[], None], timeout_s: float = 30) -> bool:
    """Ask politely (terminate), wait, then SIGKILL; True if something was running."""
    if not alive(pid):
        return False
    terminate()
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, 9)
    return True
