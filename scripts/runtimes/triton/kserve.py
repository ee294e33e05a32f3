r"""Triton's KServe bundle: the storage root *is* a model repository, which KServe's
kserve-tritonserver runtime starts as

    tritonserver --model-store=/mnt/models --grpc-port=9000 --http-port=8080 \
        --allow-grpc=true --allow-http=true

Which backend (TRITON_BACKEND, onnxruntime by default):
- onnxruntime / pytorch: the tensor models on Triton's native backends, which NVIDIA's image
  carries; nothing needs installing in the container, and they skip the Python stub's overhead.
  The Python pre/post-processing steps and the ensembles are left out: they need numpy < 2,
  pillow, pydantic and tokenizers in the container's Python, which the stock image lacks, and
  with KServe's arguments (no --exit-on-error=false) one model that fails to load stops the
  whole server. Clients send model tensors over v2; for images and text, use the TorchServe
  bundle, whose handler decodes them.
- python: the same repository `make serve` runs here, ensembles included; the image must carry
  the project's pinned packages (an image built FROM the pinned tritonserver release with them
  pip-installed, or an EXECUTION_ENV_PATH tarball). The tests start this variant with KServe's
  arguments, since native backends do not run on this machine (they are checked offline).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.pipeline.layout import Layout
from scripts.kserve.storage import KServeBundle
from scripts.runtimes.triton.repository import build_repository
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.server import repository_models
from scripts.runtimes.triton.settings import NAME
from scripts.spec import ModelSpec
from scripts.spec.cluster import KServeSpec

MOUNT = Path("/mnt/models")
# NGC tritonserver 25.10 (Triton 2.62): the first release with every fix of NVIDIA's 2025
# bulletins (25.07: HTTP stack overflow; 25.08: Python backend shared memory, bulletin 5687;
# 25.10: the rest). Here the 2.51 binary of the pytriton wheel runs the same repository.
RUNTIME_VERSION = "25.10-py3"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8080, 9000, 8002
ADMIN_KEY_ENV = "TRITON_ADMIN_KEY"
# What tritonserver writes under KServe's read-only root filesystem (emptyDirs, scripts/kserve):
# /tmp (the Python backend's stubs); its shared memory is /dev/shm, a mount of its own.
WRITABLE_DIRS = ("/tmp",)


def kserve_args(
    tree: Path | str = MOUNT, http_port: int = HTTP_PORT, grpc_port: int = GRPC_PORT
) -> list[str]:
    """tritonserver's arguments as KServe's kserve-tritonserver ServingRuntime passes them."""
    return [
        f"--model-store={tree}",
        f"--grpc-port={grpc_port}",
        f"--http-port={http_port}",
        "--allow-grpc=true",
        "--allow-http=true",
    ]


def hardening_args(admin_key: str = f"$({ADMIN_KEY_ENV})") -> list[str]:
    """What the InferenceService adds to KServe's arguments: every admin API behind the key (from
    the service's Secret; Kubernetes expands $(VAR) in args) and latency summaries."""
    restricted = f"{','.join(tr.RESTRICTED_APIS)}:{tr.ADMIN_HEADER}={admin_key}"
    return [
        f"--http-restricted-api={restricted}",
        f"--grpc-restricted-protocol={restricted}",
        "--metrics-config=summary_latencies=true",
    ]


def write_tree(specs: list[ModelSpec], layout: Layout, out: Path, backend: str) -> Path:
    """The bundle's own repository for `backend`, written from the exports (the tree is the
    bundle: KServe's backend may differ from the one `make serve` runs here). A generation model
    is a Python model needing torch and transformers, which NVIDIA's stock image lacks: it is in
    the `python` bundle only."""
    if backend != "python":
        specs = [spec for spec in specs if not spec.task.serving.pretrained]
    shutil.rmtree(out, ignore_errors=True)
    build_repository(specs, layout, out, backend, force=True, ensembles=backend == "python")
    return out


class TritonKServe:
    """KServeBundler: the storage root is a model repository for KServe's backend."""

    def bundle(
        self, specs: list[ModelSpec], layout: Layout, out: Path, settings: KServeSpec
    ) -> KServeBundle:
        tree = write_tree(specs, layout, out, settings.triton_backend)
        return KServeBundle(
            NAME,
            tree,
            "triton",
            RUNTIME_VERSION,
            "v2",
            repository_models(tree),
            METRICS_PORT,
            tuple(hardening_args()),
            (ADMIN_KEY_ENV,),
        )
