"""The spec's `kserve:` section: what the InferenceService manifests of `make kserve` take from
the spec (one service per runtime, serving every model of the spec)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from handlers.plan import StrictModel

DNS_LABEL = r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$"  # Kubernetes names, with room for "-torchserve"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"


class KServeSpec(StrictModel):
    service: str = Field(default="torchship", pattern=DNS_LABEL)  # InferenceService name prefix
    namespace: str | None = Field(default=None, pattern=DNS_LABEL)
    # where the bundles are uploaded: <storage_uri>/<runtime>; a placeholder until you set it
    storage_uri: str = "s3://CHANGE-ME/torchship"
    protocol: Literal["v1", "v2"] = "v2"  # TorchServe's; Triton speaks v2 only
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    cpu: str = Field(default="1", pattern=QUANTITY)
    memory: str = Field(default="2Gi", pattern=QUANTITY)
    gpus: int = Field(default=0, ge=0)
    canary_percent: int = Field(default=10, ge=1, le=99)  # traffic to a new bundle at first
    # Triton's bundle: native backends run in NVIDIA's stock image; python needs the packages
    triton_backend: Literal["onnxruntime", "pytorch", "python"] = "onnxruntime"

    @model_validator(mode="after")
    def _replicas_ordered(self) -> KServeSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self
