"""What a runtime's KServe capability (scripts/runtimes/protocols.py: KServeBundler) writes: one
storage tree, and what its InferenceService needs to know of it (bundle.py makes the manifests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KServeBundle:
    """One runtime's storage tree for KServe, and what its InferenceService needs to know."""

    runtime: str
    tree: Path  # upload this folder as the storageUri
    model_format: str  # predictor.model.modelFormat.name
    runtime_version: str  # the serving image's tag, pinned to what is tested here
    protocol: str  # predictor.model.protocolVersion
    models: list[str]  # the served names inside
    metrics_port: int  # where the pod's Prometheus metrics are (/metrics), for the scrape
    args: tuple[str, ...] = ()  # more server arguments (may name $(VAR) of secret_env)
    secret_env: tuple[str, ...] = ()  # variables from the service's Secret (key: lower-case name)
