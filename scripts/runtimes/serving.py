"""Steps `serve` and `stop`, over every runtime: start each runtime on what the build generated
(never building: the pipeline's ensure step has built and signed it), wait until every model is
READY, and say where everything is. `serving()` reuses running servers (or starts them for the
duration) for the steps that need live endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

from scripts.pipeline.layout import Layout
from scripts.pipeline.signing import refuse_unverified
from scripts.runtimes.processes import ModelsFailed
from scripts.runtimes.protocols import Live, Server, StartOptions
from scripts.runtimes.registry import RUNTIMES, selected
from scripts.spec import BuildError, ModelSpec


def ready_report(
    title: str, waited: float, models: list[str], endpoints: list[tuple[str, str]]
) -> list[str]:
    """What `make serve` prints once a runtime is READY: its models, then where everything is."""
    width = max(len(label) for label, _ in endpoints)
    return [
        f"{title} READY in {waited:.1f}s: {', '.join(models)}",
        *[f"  {label.ljust(width)}  {where}" for label, where in endpoints],
    ]


def serve_runtimes(
    runtime: str, models: list[ModelSpec], layout: Layout, timeout_s: float
) -> list[str]:
    """Start the runtime(s) on their built artifacts. A model that fails to load is named with
    its log lines while the others keep serving (then BuildError, so `make serve` exits
    non-zero); any other failure stops what this call started."""
    lines: list[str] = []
    started: list[Live[Any]] = []
    failures: list[str] = []
    runtimes = selected(runtime)
    # with signing on, every runtime's artifacts are checked before any server starts
    refuse_unverified([a for r in runtimes for a in r.artifacts.signed_artifacts(models, layout)])
    try:
        for r in runtimes:
            failed: set[str] = set()
            if r.server.running(layout) is not None:  # e.g. the other one was killed: start this
                lines.append(
                    f"{r.title} already running: left as it is (`make stop` first to restart it)"
                )
                continue
            try:
                server = r.server.start(models, layout, StartOptions(timeout_s=timeout_s))
            except ModelsFailed as exc:
                if exc.server is None:
                    raise
                server, failed = exc.server, set(exc.failed)
                failures += exc.problems
            live = r.attach(server)
            started.append(live)
            names = [n for m in models for n in r.artifacts.served_names(m) if n not in failed]
            lines += ready_report(r.title, server.waited_s, names, live.endpoints_report(layout))
    except Exception:
        for live in started:
            live.stop()
        raise
    if failures:
        raise BuildError(lines + failures)
    return lines


def stop_all(layout: Layout) -> list[str]:
    """Stop `make serve`'s instance of every runtime (its workdir: the layout's run state)."""
    return [
        f"{r.title} stopped"
        if r.server.stop(layout.state(r.name))
        else f"{r.title} was not running"
        for r in RUNTIMES.values()
    ]


@contextlib.contextmanager
def serving(
    models: list[ModelSpec], layout: Layout, timeout_s: float = 300
) -> Generator[dict[str, Server]]:
    """{runtime name: server} as `make serve` runs them: reused when already running, else
    started here and stopped again on the way out."""
    servers: dict[str, Server] = {}
    started: list[Live[Any]] = []
    try:
        for name, r in RUNTIMES.items():
            server = r.server.running(layout)
            if server is None:
                try:
                    server = r.server.start(models, layout, StartOptions(timeout_s=timeout_s))
                except ModelsFailed as exc:
                    if exc.server is not None:  # a check needs every model: stop the rest too
                        r.server.stop(exc.server.workdir)
                    raise
                started.append(r.attach(server))
            servers[name] = server
        yield servers
    finally:
        for live in started:
            live.stop()
