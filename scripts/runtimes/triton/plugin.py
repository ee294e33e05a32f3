"""The Triton runtime plugin: the model repository in triton_repo/, the tritonserver that the
nvidia-pytriton wheel carries started on it, HTTP and gRPC clients for `make verify`, and the
per-request Python-backend setup for `make bench`."""
from __future__ import annotations

import contextlib
from pathlib import Path

from handlers.plan import ServingPlan
from scripts.pipeline.paths import TRITON_REPO
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
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.settings import scheduling
from scripts.spec import ModelSpec


class Triton(Runtime):
    name = "triton"
    title = "tritonserver"
    default_workdir = tr.DEFAULT_WORKDIR

    def translate(self, plan: ServingPlan) -> Translation:
        return scheduling(plan)

    def build(self, specs: list[ModelSpec], root: Path, force: bool = False, backend: str = "python",
              out: Path | None = None) -> list[BuildRow]:
        from scripts.pipeline.plan import serving_plan
        from scripts.runtimes.triton.repository import build_repository, model_names

        rebuilt = build_repository(specs, root, out or root / TRITON_REPO, backend, force)
        return [BuildRow(spec.name, f"written ({backend})" if rebuilt[spec.name] else "up to date",
                         ", ".join(model_names(spec)),
                         self.translate(serving_plan(spec.for_runtime(self.name), root)).warnings)
                for spec in specs]

    def served_names(self, spec: ModelSpec) -> list[str]:
        from scripts.runtimes.triton.repository import model_names

        return model_names(spec)

    def signed_artifacts(self, specs: list[ModelSpec], root: Path) -> list[Path]:
        from scripts.runtimes.triton.repository import model_dirs

        return [d for spec in specs for d in model_dirs(spec, root / TRITON_REPO) if d.exists()]

    def kserve_bundle(self, specs, root, out, settings) -> KServeBundle:
        from scripts.runtimes.triton import kserve

        tree = kserve.write_tree(specs, root, out, settings.triton_backend)
        return KServeBundle(self.name, tree, "triton", kserve.RUNTIME_VERSION, "v2", tr.repository_models(tree))

    def served_format(self, spec: ModelSpec, root: Path) -> str:
        from scripts.runtimes.triton.repository import python_format

        return python_format(spec.for_runtime(self.name), root, None)

    def start(self, specs, root, workdir=None, free_ports=False, timeout_s=300, repo: Path | None = None,
              names: list[str] | None = None, watch: bool | None = None) -> tr.Triton:
        """Generate what is missing (Python backend: the one that runs here) unless given a
        repository, start tritonserver, wait for READY (stopping it on failure). `watch`: the
        stub watchdog (watchdog.py), on by default for `make serve`'s server."""
        if repo is None:
            repo = root / TRITON_REPO
            self.build(specs, root)
        names = names or [n for m in specs for n in self.served_names(m)]
        ports = tr.Ports(free_port(), free_port(), free_port()) if free_ports else tr.Ports()
        server = tr.start(repo, names, ports, workdir or root / tr.DEFAULT_WORKDIR)
        server = ready_or_stopped(server, names, lambda: tr.wait_ready(server, names, timeout_s),
                                  lambda: tr.stop(server.workdir))
        if watch if watch is not None else workdir is None:
            tr.start_watchdog(server, repo)
        return server

    def running(self, root: Path) -> tr.Triton | None:
        server = tr.attach(root / tr.DEFAULT_WORKDIR)
        return server if tr.is_running(server) else None

    def stop_workdir(self, workdir: Path) -> bool:
        return tr.stop(workdir)

    def endpoints_report(self, server: tr.Triton, root: Path) -> list[tuple[str, str]]:
        workdir = shown(server.workdir, root)
        return [("HTTP", f"http://{server.http_url}/v2/models/<model>/infer"),
                ("gRPC", server.grpc_url),
                ("metrics", server.metrics_url),
                ("admin", f"model-repository API needs header '{tr.ADMIN_HEADER}: <key>' "
                          f"(gRPC: '{tr.GRPC_ADMIN_HEADER}'); key in {workdir}/admin_key"),
                ("log", f"{workdir}/triton.log")]

    def clients(self, server: tr.Triton) -> dict:
        from scripts.runtimes.triton.client import TritonClient

        return {"http": TritonClient(server.http_url, "http"), "grpc": TritonClient(server.grpc_url, "grpc")}

    def tensor_endpoints(self, server: tr.Triton, served: str | None = None,
                         version: int | None = None) -> dict[str, TensorCall]:
        """`served`/`version`: one model name and version instead of each spec's default."""
        from scripts.runtimes.triton.client import spec_datatypes, spec_shapes, wire_shapes

        def call(client):
            return lambda spec, inputs: spec_shapes(spec, client.infer(
                served or spec.name, wire_shapes(spec, inputs), spec_datatypes(spec), version=version))

        return {f"triton-{protocol}": call(client) for protocol, client in self.clients(server).items()}

    def request_endpoints(self, server: tr.Triton, spec: ModelSpec) -> dict[str, RequestCall]:
        from scripts.runtimes.triton.client import decode_labels
        from scripts.runtimes.triton.configs import LABEL, SCORE, has_ensemble

        if not has_ensemble(spec):
            return {}

        def call(client):
            def infer(path: Path) -> tuple[str, float]:
                out = client.infer(f"{spec.name}_ensemble", {spec.task.preprocess.ensemble_input: [path.read_bytes()]})
                return decode_labels(out[LABEL])[0], float(out[SCORE].reshape(-1)[0])
            return infer

        return {f"triton-ensemble-{protocol}": call(client) for protocol, client in self.clients(server).items()}

    def load_target(self, server: tr.Triton, spec: ModelSpec, root: Path, workdir: Path) -> LoadTarget:
        from scripts.runtimes.triton import stock

        return stock.load_targets([spec], root, server, {(spec.name, "triton"): self.served_names(spec)[0]},
                                  workdir, setups=("triton",), protocols=("http",))[0][3]

    @contextlib.contextmanager
    def bench_deployment(self, specs: list[ModelSpec], root: Path, workdir: Path, log):
        """This project's tensor models and the per-request setup side by side in one
        tritonserver on free ports; yields [(model, setup, protocol, LoadTarget)]."""
        from scripts.runtimes.triton import stock

        repo = workdir / "triton_repo"
        names = stock.repository(specs, root, repo)
        server = self.start(specs, root, workdir / "triton", free_ports=True, repo=repo,
                            names=sorted(set(names.values())))
        log(f"tritonserver READY in {server.waited_s:.1f}s")
        try:
            yield stock.load_targets(specs, root, server, names, workdir)
        finally:
            tr.stop(server.workdir)

    # --- versions and rollout: repository API calls in versions.py -----------------------------
    def build_version(self, spec: ModelSpec, version: int, root: Path) -> BuildRow:
        from scripts.runtimes.triton.repository import build_version

        built = build_version(spec, version, root, root / TRITON_REPO)
        return BuildRow(spec.name, "written (python)" if built else "up to date", f"{spec.name}/{version}/")

    def versions(self, server: tr.Triton, spec: ModelSpec) -> ServedVersions:
        from scripts.runtimes.triton import versions

        loaded = versions.loaded(server, spec.name)
        return ServedVersions(loaded, max(loaded) if loaded else None)

    def load_beside(self, server: tr.Triton, spec: ModelSpec, version: int, root: Path) -> bool:
        from scripts.runtimes.triton import versions

        if version in versions.loaded(server, spec.name):
            return False
        name = versions.stage(server, root / TRITON_REPO, spec.name, version)
        versions.wait_loaded(server, name, [version])
        return True

    def version_endpoints(self, server: tr.Triton, spec: ModelSpec, version: int) -> dict[str, TensorCall]:
        from scripts.runtimes.triton import versions

        public = version in versions.loaded(server, spec.name)
        return self.tensor_endpoints(server, spec.name if public else versions.CANDIDATE.format(spec.name), version)

    def make_default(self, server: tr.Triton, spec: ModelSpec, version: int, keep: int | None, root: Path) -> None:
        from scripts.runtimes.triton import versions

        wanted = versions.policy(version, keep)
        with versions.repository_lock(server):
            versions.load(server, versions.with_versions(versions.disk_config(root / TRITON_REPO, spec.name), wanted))
            versions.wait_loaded(server, spec.name, wanted)
        candidate = versions.CANDIDATE.format(spec.name)
        if versions.loaded(server, candidate):
            versions.unload(server, candidate)

    def unload(self, server: tr.Triton, spec: ModelSpec, version: int, root: Path) -> None:
        from scripts.runtimes.triton import versions

        candidate = versions.CANDIDATE.format(spec.name)
        if version in versions.loaded(server, candidate):
            versions.unload(server, candidate)
        remaining = [v for v in versions.loaded(server, spec.name) if v != version]
        if remaining and len(remaining) < len(versions.loaded(server, spec.name)):
            versions.load(server, versions.with_versions(versions.disk_config(root / TRITON_REPO, spec.name),
                                                         remaining))

    def requests_served(self, server: tr.Triton, spec: ModelSpec, version: int) -> float:
        from scripts.runtimes.triton import versions

        return versions.requests_served(server, spec.name, version)
