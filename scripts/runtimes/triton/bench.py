"""`make bench` on Triton: this project's tensor models beside the per-request Python-backend
setup in one tritonserver on free ports (stock.py writes the scratch repository and the data)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import (
    DeploymentTargets,
    LoadTarget,
    ServerControl,
    StartOptions,
    bench_setups,
    StockBar,
)
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton import stock
from scripts.runtimes.triton.settings import NAME
from scripts.spec import ModelSpec


class TritonBench:
    """BenchSetup; starts its servers through the runtime's ServerControl."""

    setups = bench_setups(NAME, "Triton", "per-request Python backend", ("http", "grpc"))
    packages = ("tritonclient", "nvidia-pytriton")
    stock_bar = StockBar(1.5, "the per-request Python-backend setup")

    def __init__(self, control: ServerControl):
        self.control = control

    def load_target(
        self, server: tr.Triton, spec: ModelSpec, layout: Layout, workdir: Path
    ) -> LoadTarget:
        return stock.load_targets(
            [spec],
            layout,
            server,
            {(spec.name, NAME): spec.name},
            workdir,
            setups=(NAME,),
            protocols=("http",),
        )[0][3]

    @contextlib.contextmanager
    def deployment(
        self, specs: list[ModelSpec], layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> Iterator[DeploymentTargets]:
        """The built tensor models (copied) and the stock ones in a scratch repository."""
        repo = workdir / "repository"
        names = stock.repository(specs, layout, repo)
        server = self.control.start(
            specs,
            layout,
            StartOptions(
                workdir=workdir / NAME,
                free_ports=True,
                artifacts=repo,
                names=sorted(set(names.values())),
                open_statistics=True,  # perf_analyzer reads them, and sends no key over gRPC
            ),
        )
        log(f"tritonserver READY in {server.waited_s:.1f}s")
        try:
            yield stock.load_targets(specs, layout, server, names, workdir)
        finally:
            self.control.stop(server.workdir)
