"""The TorchServe runtime plugin: `.mar` archives in model_store/, a TorchServe started on them,
REST and gRPC clients for `make verify`, and the stock BaseHandler setup for `make bench`."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from handlers.plan import ServingPlan
from scripts.pipeline.paths import MODEL_STORE
from scripts.runtimes.base import (
    BuildRow,
    KServeBundle,
    LoadTarget,
    RequestCall,
    Runtime,
    ServedVersions,
    TensorCall,
    Translation,
    shown,
)
from scripts.runtimes.processes import free_port, ready_or_stopped
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve.settings import model_config_yaml
from scripts.spec import ModelSpec

TEMPLATE = Path("config.properties")
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".txt": "text/plain", ".json": "application/json"}


def ports_from_config(template: Path) -> ts.Ports:
    """The ports written in config.properties, so a user's edit there is honoured."""
    text = template.read_text()

    def port(key: str, default: int) -> int:
        match = re.search(rf"^{key}=.*?(\d+)\s*$", text, re.MULTILINE)
        return int(match.group(1)) if match else default

    defaults = ts.Ports()
    return ts.Ports(port("inference_address", defaults.inference), port("management_address", defaults.management),
                    port("metrics_address", defaults.metrics), port("grpc_inference_port", defaults.grpc_inference),
                    port("grpc_management_port", defaults.grpc_management))


JSON_BYTES_PER_VALUE = 24   # a float32 as JSON text, with separators, at most


def max_request_bytes(config: Path) -> int:
    """max_request_size of the running server's config.properties (TorchServe's default else)."""
    match = re.search(r"^max_request_size=(\d+)\s*$", config.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 6_553_600


def request_chunks(inputs: dict, limit: int) -> list[dict]:
    """Rows split into requests whose JSON stays under TorchServe's max_request_size (a
    224x224 RGB tensor is ~3 MB of JSON: a few per request)."""
    row_values = sum(int(np.prod(v.shape[1:])) for v in inputs.values())
    per_request = max(1, limit // (row_values * JSON_BYTES_PER_VALUE))
    rows = len(next(iter(inputs.values())))
    return [{k: v[i:i + per_request] for k, v in inputs.items()} for i in range(0, rows, per_request)]


def answers_to_outputs(spec: ModelSpec, answers: list[dict] | dict) -> dict:
    if isinstance(answers, dict):  # a never-batched model's one answer: its outputs as they are
        return {t.name: np.array(answers["outputs"][t.name]) for t in spec.outputs}
    return {t.name: np.array([a["outputs"][t.name] for a in answers]) for t in spec.outputs}


class TorchServe(Runtime):
    name = "torchserve"
    title = "TorchServe"
    default_workdir = ts.DEFAULT_WORKDIR

    def translate(self, plan: ServingPlan) -> Translation:
        return model_config_yaml(plan)

    def build(self, specs: list[ModelSpec], root: Path, force: bool = False) -> list[BuildRow]:
        from scripts.pipeline.plan import serving_plan
        from scripts.runtimes.torchserve.archive import archive_model, mar_path

        rows = []
        for spec in specs:
            built = archive_model(spec, root, root / MODEL_STORE, force)
            rows.append(BuildRow(spec.name, "archived" if built else "up to date",
                                 str(mar_path(spec, MODEL_STORE)),
                                 self.translate(serving_plan(spec.for_runtime(self.name), root)).warnings))
        return rows

    def served_names(self, spec: ModelSpec) -> list[str]:
        return [spec.name]

    def signed_artifacts(self, specs: list[ModelSpec], root: Path) -> list[Path]:
        from scripts.runtimes.torchserve.archive import mar_path

        return [mar_path(spec, root / MODEL_STORE) for spec in specs]

    def kserve_bundle(self, specs, root, out, settings) -> KServeBundle:
        from scripts.runtimes.torchserve import kserve

        self.build(specs, root)
        tree = kserve.write_tree(root / TEMPLATE, specs, root, root / MODEL_STORE, out)
        return KServeBundle(self.name, tree, "pytorch", kserve.RUNTIME_VERSION, settings.protocol,
                            [s.name for s in specs])

    def served_format(self, spec: ModelSpec, root: Path) -> str:
        return spec.for_runtime(self.name).serving.format

    def instance(self, root: Path) -> ts.TorchServe:
        """The instance `make serve` runs (or would run) from build/torchserve."""
        return ts.TorchServe((root / ts.DEFAULT_WORKDIR).resolve(), ports_from_config(root / TEMPLATE))

    def start(self, specs, root, workdir=None, free_ports=False, timeout_s=300, store: Path | None = None,
              template: Path | None = None, names: list[str] | None = None,
              model_api: bool | None = None) -> ts.TorchServe:
        """`model_api` (registering versions for rollouts) defaults to on for `make serve`'s
        instance when a model has versions; it stays behind the token and allowed_urls."""
        if store is None:
            self.build(specs, root)
        instance = self.instance(root)
        ports = ts.Ports(*(free_port() for _ in range(5))) if free_ports else instance.ports
        from scripts.runtimes.torchserve.archive import mar_name

        # the archives to load: named by version (digits_cnn.v2.mar), unless given by name
        archives = names or [mar_name(m).removesuffix(".mar") for m in specs]
        names = names or [m.name for m in specs]
        if model_api is None:
            model_api = workdir is None and any(m.versions for m in specs)
        rollouts = {"enable_model_api": "true"} if model_api else {}
        server = ts.start(template or root / TEMPLATE, store or root / MODEL_STORE, archives, ports,
                          workdir or instance.workdir, rollouts)
        return ready_or_stopped(server, names, lambda: ts.wait_ready(server, names, timeout_s),
                                lambda: ts.stop(server.workdir))

    def running(self, root: Path) -> ts.TorchServe | None:
        instance = self.instance(root)
        return instance if ts.is_running(instance) else None

    def stop_workdir(self, workdir: Path) -> bool:
        return ts.stop(workdir)

    def endpoints_report(self, server: ts.TorchServe, root: Path) -> list[tuple[str, str]]:
        workdir = shown(server.workdir, root)
        return [("inference", f"{server.inference_url}/predictions/<model>"),
                ("management", f"{server.management_url}/models"),
                ("metrics", f"{server.metrics_url}/metrics"),
                ("gRPC", f"127.0.0.1:{server.ports.grpc_inference} (inference), "
                         f"127.0.0.1:{server.ports.grpc_management} (management)"),
                ("tokens", f"{workdir}/key_file.json (\"inference\" and \"management\" keys; "
                           "send 'Authorization: Bearer <key>')"),
                ("logs", f"{workdir}/logs/")]

    def tensor_endpoints(self, server: ts.TorchServe, version: int | None = None) -> dict[str, TensorCall]:
        """`version`: requests that name it (/predictions/<model>/<version>), else the default."""
        from scripts.runtimes.torchserve.client import TorchServeClient
        from scripts.runtimes.torchserve.grpc_client import TorchServeGrpcClient

        limit = max_request_bytes(server.workdir / "config.properties")
        named = str(version) if version is not None else None

        def call(client):
            def infer(spec: ModelSpec, inputs: dict) -> dict:
                answers = []
                if spec.batching.max_batch_size == 0:  # one model call: the outputs need all rows at once
                    return answers_to_outputs(spec, client.predict(spec.name, {"tensors": {
                        k: v.tolist() for k, v in inputs.items()}}, version=named))
                for chunk in request_chunks(inputs, limit):
                    answers += client.predict(spec.name, {"tensors": {k: v.tolist() for k, v in chunk.items()}},
                                              version=named)
                return answers_to_outputs(spec, answers)
            return infer

        return {"torchserve-rest": call(TorchServeClient.for_server(server)),
                "torchserve-grpc": call(TorchServeGrpcClient.for_server(server))}

    def request_endpoints(self, server: ts.TorchServe, spec: ModelSpec) -> dict[str, RequestCall]:
        from scripts.runtimes.torchserve.client import TorchServeClient

        client = TorchServeClient.for_server(server)

        def call(path: Path) -> tuple[str, float]:
            answer = client.predict(spec.name, path.read_bytes(), CONTENT_TYPES.get(path.suffix))
            return answer["label"], answer["score"]

        return {"torchserve-rest (requests)": call}

    def load_target(self, server: ts.TorchServe, spec: ModelSpec, root: Path, workdir: Path) -> LoadTarget:
        from scripts.runtimes.torchserve import stock

        return stock.load_targets([spec], root, server, {(spec.name, "torchserve"): spec.name}, workdir,
                                  setups=("torchserve",))[0][3]

    @contextlib.contextmanager
    def bench_deployment(self, specs: list[ModelSpec], root: Path, workdir: Path, log):
        """This project's archives and the stock BaseHandler route side by side in one
        TorchServe on free ports; yields [(model, setup, protocol, LoadTarget)]."""
        from scripts.runtimes.torchserve import stock

        store, names = stock.model_store(specs, root, workdir)
        template = workdir / "config.properties"
        template.write_text(stock.config((root / TEMPLATE).read_text()))
        server = self.start(specs, root, workdir / "torchserve", free_ports=True, store=store,
                            template=template, names=sorted(names.values()))
        log(f"TorchServe READY in {server.waited_s:.1f}s")
        try:
            yield stock.load_targets(specs, root, server, names, workdir)
        finally:
            ts.stop(server.workdir)

    # --- versions and rollout: the management API (model API on, with the token) ------------
    def build_version(self, spec: ModelSpec, version: int, root: Path) -> BuildRow:
        return self.build([spec.at_version(version)], root)[0]

    def versions(self, server: ts.TorchServe, spec: ModelSpec) -> ServedVersions:
        from scripts.runtimes.torchserve.client import TorchServeClient

        client = TorchServeClient.for_server(server)
        loaded = sorted(int(e["modelVersion"]) for e in client.describe(spec.name, "all"))
        return ServedVersions(loaded, int(client.describe(spec.name)[0]["modelVersion"]))

    def rollout_problems(self, server: ts.TorchServe, spec: ModelSpec) -> list[str]:
        config = (server.workdir / "config.properties").read_text()
        if "enable_model_api=true" in config.splitlines():
            return []
        return [f"TorchServe runs without the model API, which registering {spec.name}'s versions needs (it is "
                "switched on when `make serve` starts with a model that has versions): `make stop` then `make serve`"]

    def load_beside(self, server: ts.TorchServe, spec: ModelSpec, version: int, root: Path) -> bool:
        """Register the version's own .mar (not the default: TorchServe keeps the one it has)."""
        from scripts.runtimes.torchserve.archive import mar_name
        from scripts.runtimes.torchserve.client import TorchServeClient

        if version in self.versions(server, spec).loaded:
            return False
        client = TorchServeClient.for_server(server)
        client.register(mar_name(spec.at_version(version)), initial_workers=spec.serving.workers.min)
        ts.wait_ready(server, [spec.name], version=version)
        return True

    def version_endpoints(self, server: ts.TorchServe, spec: ModelSpec, version: int) -> dict[str, TensorCall]:
        return self.tensor_endpoints(server, version)

    def make_default(self, server: ts.TorchServe, spec: ModelSpec, version: int, keep: int | None,
                     root: Path) -> None:
        from scripts.runtimes.torchserve.client import TorchServeClient

        for loaded in (version, keep):   # after a restart neither may be registered yet
            if loaded is not None:
                self.load_beside(server, spec, loaded, root)
        TorchServeClient.for_server(server).set_default(spec.name, str(version))

    def unload(self, server: ts.TorchServe, spec: ModelSpec, version: int, root: Path) -> None:
        from scripts.runtimes.torchserve.client import TorchServeClient

        if version in self.versions(server, spec).loaded:
            TorchServeClient.for_server(server).unregister(spec.name, str(version))

    def requests_served(self, server: ts.TorchServe, spec: ModelSpec, version: int) -> float:
        return ts.requests_served(server, spec.name, version)
