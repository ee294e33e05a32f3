"""Steps `serve` and `stop`, over every runtime plugin: start each runtime on what the build
generated, wait until every model is READY, and say where everything is. `serving()` reuses
running servers (or starts them for the duration) for the steps that need live endpoints."""
from __future__ import annotations

import contextlib
from pathlib import Path

from scripts.pipeline.signing import refuse_unverified
from scripts.runtimes.processes import ModelsFailed
from scripts.runtimes.registry import RUNTIMES, selected
from scripts.spec import BuildError, ModelSpec


def ready_report(title: str, waited: float, models: list[str], endpoints: list[tuple[str, str]]) -> list[str]:
    """What `make serve` prints once a runtime is READY: its models, then where everything is."""
    width = max(len(label) for label, _ in endpoints)
    return [f"{title} READY in {waited:.1f}s: {', '.join(models)}",
            *[f"  {label.ljust(width)}  {where}" for label, where in endpoints]]


def build_signed(plugin, models: list[ModelSpec], root: Path, **options) -> list:
    """The plugin's build, then (with a signing key configured) a signature for each artifact
    it (re)built or that has none; returns the build rows."""
    rows = plugin.build(models, root, **options)
    sign_rebuilt(plugin, rows, models, root)
    return rows


def sign_rebuilt(plugin, rows: list, models: list[ModelSpec], root: Path) -> None:
    """With a signing key configured, sign each artifact its build row says was (re)built, and
    any still unsigned."""
    from scripts.pipeline.signing import sign_if_configured

    rebuilt = {a for row, m in zip(rows, models) if row.status != "up to date"
               for a in plugin.signed_artifacts([m], root)}
    sign_if_configured(plugin.signed_artifacts(models, root), rebuilt)


def serve_runtimes(runtime: str, models: list[ModelSpec], root: Path, timeout_s: float) -> list[str]:
    """Start the runtime(s). A model that fails to load is named with its log lines while the
    others keep serving (then BuildError, so `make serve` exits non-zero); any other failure
    stops what this call started."""
    lines, started, failures = [], [], []
    plugins = selected(runtime)
    for plugin in plugins:  # every runtime's artifacts checked before any server starts
        build_signed(plugin, models, root)
    refuse_unverified([a for plugin in plugins for a in plugin.signed_artifacts(models, root)])  # signing on
    try:
        for plugin in plugins:
            failed: set[str] = set()
            if plugin.running(root) is not None:  # e.g. the other runtime was killed: start only that one
                lines.append(f"{plugin.title} already running: left as it is (`make stop` first to restart it)")
                continue
            try:
                server = plugin.start(models, root, timeout_s=timeout_s)
            except ModelsFailed as exc:
                if exc.server is None:
                    raise
                server, failed = exc.server, set(exc.failed)
                failures += exc.problems
            started.append((plugin, server))
            names = [n for m in models for n in plugin.served_names(m) if n not in failed]
            lines += ready_report(plugin.title, server.waited_s, names, plugin.endpoints_report(server, root))
    except Exception:
        for plugin, server in started:
            plugin.stop(server)
        raise
    if failures:
        raise BuildError(lines + failures)
    return lines


def stop_all(root: Path) -> list[str]:
    return [f"{plugin.title} stopped" if plugin.stop(root) else f"{plugin.title} was not running"
            for plugin in RUNTIMES.values()]


@contextlib.contextmanager
def serving(models: list[ModelSpec], root: Path, timeout_s: float = 300):
    """{runtime name: server} as `make serve` runs them: reused when already running, else
    started here and stopped again on the way out."""
    servers, started = {}, []
    try:
        for name, plugin in RUNTIMES.items():
            servers[name] = plugin.running(root)
            if servers[name] is None:
                try:
                    servers[name] = plugin.start(models, root, timeout_s=timeout_s)
                except ModelsFailed as exc:
                    if exc.server is not None:  # a check needs every model: stop the rest too
                        plugin.stop(exc.server)
                    raise
                started.append((plugin, servers[name]))
        yield servers
    finally:
        for plugin, server in started:
            plugin.stop(server)
