"""`make kserve`: each runtime's storage tree under kserve/<runtime>/ (in the output folder),
then the InferenceService manifests (kserve/manifests/) written by the kserve SDK in this
checkout's .venv-kserve."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
from pathlib import Path

from handlers.encryption import KEY_ENV
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.layout import PROJECT, Layout
from scripts.kserve import istio
from scripts.kserve.storage import KServeBundle
from scripts.runtimes.protocols import Runtime
from scripts.spec import BuildError, ModelSpec
from scripts.spec.access import AccessSpec
from scripts.spec.cluster import KServeSpec

KSERVE_PYTHON = PROJECT / ".venv-kserve" / "bin" / "python"


def bundle_id(tree: Path) -> str:
    """A short content hash of a tree: each build uploads to its own folder, so a canary and the
    revision it is compared with never share files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        digest.update(
            str(path.relative_to(tree)).encode()
            + b"\0"
            + hashlib.sha256(path.read_bytes()).digest()
        )
    return digest.hexdigest()[:12]


def writable_dirs(runtime: str) -> tuple[str, ...]:
    """The folders a runtime writes outside its model mount (its KServe module's WRITABLE_DIRS),
    emptyDirs under the pods' read-only root filesystem."""
    module = importlib.import_module(f"scripts.runtimes.{runtime}.kserve")
    return getattr(module, "WRITABLE_DIRS", ("/tmp",))


def manifest_inputs(bundle: KServeBundle, settings: KServeSpec) -> dict:
    """What the manifests take from the spec and the bundle (plain JSON for the SDK's side)."""
    ident = bundle_id(bundle.tree)
    return {
        "name": f"{settings.service}-{bundle.runtime}",
        "namespace": settings.namespace,
        "model_format": bundle.model_format,
        "protocol": bundle.protocol,
        "runtime_version": bundle.runtime_version,
        "bundle_id": ident,
        "models": bundle.models,
        "storage_uri": f"{settings.storage_uri.rstrip('/')}/{bundle.runtime}/{ident}",
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "cpu": settings.cpu,
        "memory": settings.memory,
        "gpus": settings.gpus,
        "canary_percent": settings.canary_percent,
        "metrics_port": bundle.metrics_port,
        "args": list(bundle.args),
        "secret_env": list(bundle.secret_env),
        "writable_dirs": list(writable_dirs(bundle.runtime)),
        "key_env": KEY_ENV,
    }


def run_sdk(command: str, folder: Path, stdin: str = "") -> str:
    python = KSERVE_PYTHON
    if not python.exists():
        raise BuildError(
            f"{python} not found: run `make install` (the kserve SDK has its own environment)"
        )
    done = subprocess.run(
        [str(python), "-m", "scripts.kserve.manifests", command, str(folder)],
        cwd=PROJECT,
        input=stdin,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise BuildError(
            f"kserve manifests ({command}): {done.stdout.strip()} {done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def make_bundles(
    specs: list[ModelSpec],
    layout: Layout,
    runtimes: list[Runtime],
    settings: KServeSpec,
    out: Path | None = None,
    access: AccessSpec | None = None,
) -> tuple[list[KServeBundle], list[Path]]:
    """Every runtime's tree (from what the build path made) and its manifests, checked against
    the CRD subset (with `access`, Istio's policy for each service too); returns both."""
    out = out or layout.kserve
    ensure_built(specs, layout, runtimes)
    bundles = [  # a runtime without a KServe capability has no bundle
        runtime.kserve.bundle(specs, layout, out / runtime.name, settings)
        for runtime in runtimes
        if runtime.kserve is not None
    ]
    manifests = out / "manifests"
    shutil.rmtree(manifests, ignore_errors=True)  # no stale manifest of a runtime not built now
    inputs = [manifest_inputs(b, settings) for b in bundles]
    written = [Path(line) for line in run_sdk("write", manifests, json.dumps(inputs)).split()]
    run_sdk("check", manifests)
    if access is not None:
        policies = istio.write(bundles, settings.service, settings.namespace, access, manifests)
        found = [problem for path in policies for problem in istio.problems(path)]
        if found:
            raise BuildError(found)
        written += policies
    return bundles, written
