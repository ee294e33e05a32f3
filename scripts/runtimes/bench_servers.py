"""A bench's own server: started through the runtime's ServerControl on what is built, stopped
on exit, and stopped too when a model failed to load (a bench measures every setup or none)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator

from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import ModelsFailed
from scripts.runtimes.protocols import S, ServerControl, StartOptions
from scripts.spec import ModelSpec


@contextlib.contextmanager
def bench_server(
    control: ServerControl[S],
    specs: list[ModelSpec],
    layout: Layout,
    options: StartOptions,
    title: str,
    log: Callable[[str], None],
) -> Generator[S]:
    try:
        server = control.start(specs, layout, options)
    except ModelsFailed as failed:
        if failed.server is not None:
            control.stop(failed.server.workdir)
        raise
    log(f"{title} READY in {server.waited_s:.1f}s")
    try:
        yield server
    finally:
        control.stop(server.workdir)
