"""Versions on a running TorchServe, through its management API (model API on, with the token):
each version is its own archive, registered beside the others; `set-default` moves unversioned
requests; unregistering scales a version to 0 (so drain it first)."""

from __future__ import annotations

from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import ServedVersions
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve.archive import mar_name
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.spec import ModelSpec


class TorchServeVersions:
    """VersionControl on the management API."""

    def versions(self, server: ts.TorchServe, spec: ModelSpec) -> ServedVersions:
        client = TorchServeClient.for_server(server)
        loaded = sorted(int(e["modelVersion"]) for e in client.describe(spec.name, "all"))
        return ServedVersions(loaded, int(client.describe(spec.name)[0]["modelVersion"]))

    def rollout_problems(self, server: ts.TorchServe, spec: ModelSpec) -> list[str]:
        config = (server.workdir / "config.properties").read_text()
        if "enable_model_api=true" in config.splitlines():
            return []
        return [
            f"TorchServe runs without the model API, which registering {spec.name}'s versions "
            "needs (it is switched on when `make serve` starts with a model that has "
            "versions): `make stop` then `make serve`"
        ]

    def load_beside(
        self, server: ts.TorchServe, spec: ModelSpec, version: int, layout: Layout
    ) -> bool:
        """Register the version's own .mar (not the default: TorchServe keeps the one it has)."""
        if version in self.versions(server, spec).loaded:
            return False
        client = TorchServeClient.for_server(server)
        client.register(
            mar_name(spec.at_version(version)), initial_workers=spec.serving.workers.min
        )
        ts.wait_ready(server, [spec.name], version=version)
        return True

    def make_default(
        self, server: ts.TorchServe, spec: ModelSpec, version: int, keep: int | None, layout: Layout
    ) -> None:
        for loaded in (version, keep):  # after a restart neither may be registered yet
            if loaded is not None:
                self.load_beside(server, spec, loaded, layout)
        TorchServeClient.for_server(server).set_default(spec.name, str(version))

    def unload(self, server: ts.TorchServe, spec: ModelSpec, version: int, layout: Layout) -> None:
        if version in self.versions(server, spec).loaded:
            TorchServeClient.for_server(server).unregister(spec.name, str(version))

    def requests_served(self, server: ts.TorchServe, spec: ModelSpec, version: int) -> float:
        return ts.requests_served(server, spec.name, version)
