"""Starting, finding and stopping TorchServe on what the build archived (never building)."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import free_port, ready_or_stopped
from scripts.runtimes.protocols import GatewayRoute, StartOptions
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve.archive import mar_name
from scripts.runtimes.torchserve.settings import NAME
from scripts.spec import BuildError, ModelSpec

STUBS = "grpc_stubs"  # run state: the gRPC stubs, compiled once per output folder


def ports_from_config(template: Path) -> ts.Ports:
    """The ports written in config.properties, so a user's edit there is honoured."""
    text = template.read_text()

    def port(key: str, default: int) -> int:
        match = re.search(rf"^{key}=.*?(\d+)\s*$", text, re.MULTILINE)
        return int(match.group(1)) if match else default

    defaults = ts.Ports()
    return ts.Ports(
        port("inference_address", defaults.inference),
        port("management_address", defaults.management),
        port("metrics_address", defaults.metrics),
        port("grpc_inference_port", defaults.grpc_inference),
        port("grpc_management_port", defaults.grpc_management),
    )


class TorchServeControl:
    """ServerControl: one TorchServe per workdir; `make serve`'s runs from the layout's run
    state with the ports of the layout's config.properties."""

    def instance(self, layout: Layout) -> ts.TorchServe:
        """The instance `make serve` runs (or would run)."""
        return ts.TorchServe(
            layout.state(NAME).resolve(),
            ports_from_config(layout.torchserve_config),
            stubs=layout.state(STUBS),
        )

    def start(self, specs: list[ModelSpec], layout: Layout, options: StartOptions) -> ts.TorchServe:
        """`options.managed` (the model API, for registering versions in rollouts) defaults to
        on for `make serve`'s instance when a model has versions; it stays behind the token
        and allowed_urls. `options.names`: archives (file names without .mar) in
        `options.artifacts`, served under those names."""
        store = options.artifacts or layout.model_store
        # the archives to load: named by version (digits_cnn.v2.mar), unless given by name
        archives = options.names or [mar_name(m).removesuffix(".mar") for m in specs]
        names = options.names or [m.name for m in specs]
        missing = [store / f"{a}.mar" for a in archives if not (store / f"{a}.mar").exists()]
        if missing:
            raise BuildError(
                [f"{layout.shown(path)} not built; run `make archive` first" for path in missing]
            )
        managed = options.managed
        if managed is None:
            managed = options.workdir is None and any(m.versions for m in specs)
        instance = self.instance(layout)
        ports = ts.Ports(*(free_port() for _ in range(5))) if options.free_ports else instance.ports
        server = ts.start(
            options.config or layout.torchserve_config,
            store,
            archives,
            ports,
            options.workdir or instance.workdir,
            {"enable_model_api": "true"} if managed else {},
            stubs=instance.stubs,
        )
        return ready_or_stopped(
            server,
            names,
            lambda: ts.wait_ready(server, names, options.timeout_s),
            lambda: ts.stop(server.workdir),
        )

    def running(self, layout: Layout) -> ts.TorchServe | None:
        instance = self.instance(layout)
        return instance if ts.is_running(instance) else None

    def stop(self, workdir: Path) -> bool:
        return ts.stop(workdir)

    def endpoints_report(self, server: ts.TorchServe, layout: Layout) -> list[tuple[str, str]]:
        workdir = layout.shown(server.workdir)
        return [
            ("inference", f"{server.inference_url}/predictions/<model>"),
            ("management", f"{server.management_url}/models"),
            ("metrics", f"{server.metrics_url}/metrics"),
            (
                "gRPC",
                f"127.0.0.1:{server.ports.grpc_inference} (inference), "
                f"127.0.0.1:{server.ports.grpc_management} (management)",
            ),
            (
                "tokens",
                f'{workdir}/key_file.json ("inference" and "management" keys; '
                "send 'Authorization: Bearer <key>')",
            ),
            ("logs", f"{workdir}/logs/"),
        ]

    def gateway_routes(self, server: ts.TorchServe, specs: list[ModelSpec]) -> list[GatewayRoute]:
        """Inference and explanations by model (and version), ping open, the management API
        for admin clients; each with TorchServe's own token for it."""
        model = r"(?<model>[^/]+)(/(?<version>[0-9][^/]*))?(/|$)"
        return [
            GatewayRoute(  # health for anyone: TorchServe asks its token even there
                "^/ping$",
                server.inference_url,
                "open",
                headers=bearer(server, "inference"),
                errors="torchserve",
            ),
            GatewayRoute(
                f"^/(predictions|explanations)/{model}",
                server.inference_url,
                headers=bearer(server, "inference"),
                errors="torchserve",
            ),
            GatewayRoute(
                "^/models(/|$)",
                server.management_url,
                "admin",
                headers=bearer(server, "management"),
                errors="torchserve",
            ),
        ]

    def openai_base(
        self, server: ts.TorchServe, spec: ModelSpec, version: int
    ) -> GatewayRoute | None:
        if not spec.task.serving.openai_completions:
            return None
        return GatewayRoute(
            spec.name,
            f"{server.inference_url}/predictions/{spec.name}/{version}",
            headers=bearer(server, "inference"),
            errors="openai",
        )


def bearer(server: ts.TorchServe, api: str) -> dict[str, str]:
    """TorchServe's token for the API (none where token authorization is off)."""
    return {"Authorization": f"Bearer {server.key(api)}"} if server.key_file.exists() else {}
