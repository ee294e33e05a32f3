"""`make bench` on TorchServe: this project's archives beside the stock BaseHandler route in one
TorchServe on free ports (stock.py writes the scratch store and the request data)."""

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
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve import stock, stock_generation
from scripts.runtimes.torchserve.generation_calls import generation_calls
from scripts.runtimes.torchserve.settings import NAME
from scripts.spec import ModelSpec


class TorchServeBench:
    """BenchSetup; starts its servers through the runtime's ServerControl."""

    # not through the gateway: perf_analyzer's torchserve client does not speak TLS (each
    # request fails before it reaches nginx, which logs none)
    setups = bench_setups(
        NAME, "TorchServe", "BaseHandler + TorchScript, batch 1", ("http",), gateway=False
    )
    packages = ("torchserve", "torch-model-archiver")
    stock_bar = StockBar(3.0, "the stock BaseHandler route")

    def __init__(self, control: ServerControl[ts.TorchServe]):
        self.control = control

    def load_target(
        self, server: ts.TorchServe, spec: ModelSpec, layout: Layout, workdir: Path
    ) -> LoadTarget:
        return stock.load_targets(
            [spec], layout, server, {(spec.name, NAME): spec.name}, workdir, setups=(NAME,)
        )[0][3]

    @contextlib.contextmanager
    def deployment(
        self, specs: list[ModelSpec], layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> Generator[Deployment]:
        """The built archives (copied) and the stock ones in a scratch store under workdir."""
        store, names = stock.model_store(specs, layout, workdir)
        with self.started(specs, layout, workdir, store, sorted(names.values()), log) as server:
            yield Deployment(stock.load_targets(specs, layout, server, names, workdir), server)

    @contextlib.contextmanager
    def generation_deployment(
        self, spec: ModelSpec, layout: Layout, workdir: Path, log: Callable[[str], None]
    ) -> Generator[GenerationDeployment]:
        """The built generation archive (copied) and the stock generate() route; {setup: its
        streamed endpoint}."""
        store = workdir / "store"
        names = stock_generation.generation_store(spec, layout, store)
        with self.started([spec], layout, workdir, store, list(names.values()), log) as server:
            calls = {
                setup: generation_calls(server, spec, name)["torchserve-rest-stream"]
                for setup, name in names.items()
            }
            yield GenerationDeployment(calls, server.waited_s)

    def started(
        self,
        specs: list[ModelSpec],
        layout: Layout,
        workdir: Path,
        store: Path,
        names: list[str],
        log: Callable[[str], None],
    ) -> AbstractContextManager[ts.TorchServe]:
        """One TorchServe on free ports serving `names` from `store`, with the project's
        config.properties minus its worker count (the stock routes get TorchServe's default)."""
        template = workdir / "config.properties"
        template.write_text(stock.config(layout.torchserve_config.read_text()))
        options = StartOptions(
            workdir=workdir / NAME,
            free_ports=True,
            artifacts=store,
            config=template,
            names=sorted(names),
        )
        return bench_server(self.control, specs, layout, options, "TorchServe", log)
