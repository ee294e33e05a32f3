"""`make bench` on Triton: this project's tensor models beside the per-request Python-backend
setup in one tritonserver on free ports (stock.py writes the scratch repository and the data)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.runtimes.bench_servers import bench_server
from scripts.measure.bench.deployments import (
    bench_setups,
    Deployment,
    GenerationDeployment,
    LoadTarget,
    StockBar,
)
from scripts.runtimes.protocols import ServerControl, StartOptions
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton import stock, stock_generation
from scripts.runtimes.triton.generation_calls import generation_calls
from scripts.runtimes.triton.settings import NAME
from scripts.spec import ModelSpec


class TritonBench:
    """BenchSetup; starts its servers through the runtime's ServerControl."""

    setups = bench_setups(
        NAME, "Triton", "per-request Python backend", ("http", "grpc"), gateway=True
    )
    packages = ("tritonclient", "nvidia-pytriton")
    stock_bar = StockBar(1.5, "the per-request Python-backend setup")

    def __init__(self, control: ServerControl[tr.Triton]):
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
    ) -> Generator[Deployment]:
        """The built tensor models (copied) and the stock ones in a scratch repository."""
        repo = workdir / "repository"
        names = stock.repository(specs, layout, repo)
        with self.started(specs, layout, workdir, repo, list(names.values()), log) as server:
            yield Deployment(stock.load_targets(specs, layout, server, names, workdir), server)

    @contextlib.contextmanager
    def generation_deployment(
        self, spec: ModelSpec, layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> Generator[GenerationDeployment]:
        """The built generation model (copied) and the stock generate() model; {setup: its
        streamed endpoint}."""
        repo = workdir / "repository"
        names = stock_generation.generation_repository(spec, layout, repo)
        with self.started([spec], layout, workdir, repo, list(names.values()), log) as server:
            calls = {
                setup: generation_calls(server, spec, name)["triton-generate-stream"]
                for setup, name in names.items()
            }
            yield GenerationDeployment(calls, server.waited_s)

    def started(
        self,
        specs: list[ModelSpec],
        layout: Layout,
        workdir: Path,
        repo: Path,
        names: list[str],
        log: Callable[[str], None],
    ) -> AbstractContextManager[tr.Triton]:
        """One tritonserver on free ports serving `names` from `repo`."""
        options = StartOptions(
            workdir=workdir / NAME,
            free_ports=True,
            artifacts=repo,
            names=sorted(set(names)),
            open_statistics=True,  # perf_analyzer reads them, and sends no key over gRPC
        )
        return bench_server(self.control, specs, layout, options, "tritonserver", log)
