"""Starting, finding and stopping tritonserver on the generated repository (never generating)."""

from __future__ import annotations

from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import free_port, ready_or_stopped
from scripts.runtimes.protocols import GatewayRoute, StartOptions
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.repository import model_names
from scripts.runtimes.triton.settings import NAME
from scripts.spec import BuildError, ModelSpec


class TritonControl:
    """ServerControl: one tritonserver per workdir; `make serve`'s runs from the layout's run
    state, with the stub watchdog beside it."""

    def start(self, specs: list[ModelSpec], layout: Layout, options: StartOptions) -> tr.Triton:
        """`options.artifacts`: another repository (default: the layout's); `options.names`:
        the models to load (default: every served name of the specs); `options.managed`: the
        stub watchdog (watchdog.py), on by default for `make serve`'s server."""
        repo = options.artifacts or layout.triton_repo
        names = options.names or [n for m in specs for n in model_names(m)]
        missing = [n for n in names if not (repo / n / "config.pbtxt").exists()]
        if missing:
            raise BuildError(
                [
                    f"{layout.shown(repo / n)} not built; run `make triton-repo` first"
                    for n in missing
                ]
            )
        ports = tr.Ports(*(free_port() for _ in range(3))) if options.free_ports else tr.Ports()
        workdir = options.workdir or layout.state(NAME)
        server = tr.start(repo, names, ports, workdir, options.open_statistics)
        server = ready_or_stopped(
            server,
            names,
            lambda: tr.wait_ready(server, names, options.timeout_s),
            lambda: tr.stop(server.workdir),
        )
        managed = options.managed if options.managed is not None else options.workdir is None
        if managed:
            tr.start_watchdog(server, repo)
        return server

    def running(self, layout: Layout) -> tr.Triton | None:
        server = tr.attach(layout.state(NAME))
        return server if tr.is_running(server) else None

    def stop(self, workdir: Path) -> bool:
        return tr.stop(workdir)

    def endpoints_report(self, server: tr.Triton, layout: Layout) -> list[tuple[str, str]]:
        workdir = layout.shown(server.workdir)
        return [
            ("HTTP", f"http://{server.http_url}/v2/models/<model>/infer"),
            ("gRPC", server.grpc_url),
            ("metrics", server.metrics_url),
            (
                "admin",
                f"{', '.join(tr.RESTRICTED_APIS)} APIs need header '{tr.ADMIN_HEADER}: <key>' "
                f"(gRPC: '{tr.GRPC_ADMIN_HEADER}'); key in {workdir}/admin_key",
            ),
            ("log", f"{workdir}/triton.log"),
        ]

    def gateway_routes(self, server: tr.Triton, specs: list[ModelSpec]) -> list[GatewayRoute]:
        """The restricted APIs for admin clients with the admin key; a model's routes (infer,
        generate, metadata, ready) by model and version; health open."""
        http = f"http://{server.http_url}"
        admin = {tr.ADMIN_HEADER: server.admin_key} if server.admin_key else {}
        model = r"^/v2/models/(?<model>[^/]+)(/versions/(?<version>[0-9]+))?"
        return [
            GatewayRoute("^/v2/health/", http, "open"),
            GatewayRoute("^/v2/?$", http, "open"),  # the server's name, version and extensions
            GatewayRoute(
                "^/v2/(repository|models/stats|logging|trace|systemsharedmemory|cudasharedmemory)",
                http,
                "admin",
                admin,
            ),
            GatewayRoute(f"{model}/(stats|trace)", http, "admin", admin),
            GatewayRoute(f"{model}(/|$)", http),
        ]

    def openai_base(self, server: tr.Triton, spec: ModelSpec, version: int) -> GatewayRoute | None:
        return None  # Triton 2.51's OpenAI frontend is a separate program, not tritonserver
