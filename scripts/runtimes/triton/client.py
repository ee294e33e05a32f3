"""A Triton client over HTTP or gRPC (tritonclient): typed inputs from the spec, BYTES included,
numpy outputs back, and the server's per-model statistics. Used by the tests, the served-endpoint
verification and the benchmarks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from handlers.preprocessing.dtypes import BYTES, numpy_dtype, spec_dtype, triton_datatype
from scripts.runtimes.protocols import GatewayPass
from scripts.runtimes.triton.server import ADMIN_HEADER, GRPC_ADMIN_HEADER
from scripts.spec import ModelSpec

if TYPE_CHECKING:
    from google.protobuf.message import Message

PROTOCOLS = ("http", "grpc")


def spec_datatypes(spec: ModelSpec) -> dict[str, str]:
    """Input name -> Triton datatype for the tensor model of a spec entry."""
    return {t.name: triton_datatype(t.dtype) for t in spec.inputs}


def wire_shapes(
    spec: ModelSpec, inputs: dict[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[Any]]:
    """Golden rows as a batched Triton model takes them: a per-sample scalar (spec shape [-1])
    travels as [batch, 1] (config.pbtxt: dims [1] with an empty reshape)."""
    if spec.batching.max_batch_size == 0:
        return inputs
    return {
        t.name: inputs[t.name].reshape(-1, 1) if len(t.shape) == 1 else inputs[t.name]
        for t in spec.inputs
    }


def spec_shapes(
    spec: ModelSpec, outputs: dict[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[Any]]:
    """Outputs back in the spec's shapes ([batch, 1] -> [batch] for per-sample scalars)."""
    return {
        t.name: outputs[t.name].reshape(-1) if len(t.shape) == 1 else outputs[t.name]
        for t in spec.outputs
    }


def as_typed(value: Any, datatype: str) -> npt.NDArray[Any]:
    """A value -> the numpy array tritonclient sends for `datatype`. BYTES: str/bytes items
    as an np.object_ array of bytes (one [B, 1] column for a flat list of strings)."""
    if datatype == BYTES:

        def encoded(v: Any) -> bytes:
            return v.encode("utf-8") if isinstance(v, str) else bytes(v)

        items = np.array(value, dtype=np.object_)
        items = np.vectorize(encoded, otypes=[np.object_])(items)
        return items.reshape(-1, 1) if items.ndim <= 1 else items
    return np.ascontiguousarray(np.asarray(value, dtype=numpy_dtype(spec_dtype(datatype))))


@dataclass
class TritonClient:
    url: str  # host:port
    protocol: str = "http"
    headers: dict[str, str] | None = None
    admin_key: str | None = None  # for the restricted APIs (statistics)
    certificate: Path | None = None  # HTTPS, verified against it (the gateway's)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}; use one of {PROTOCOLS}")
        if self.protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        self.module = module
        if self.certificate is None:
            self.client = module.InferenceServerClient(self.url)
            return
        import gevent.ssl
        import tritonclient.http as https  # only HTTP goes through the gateway

        verified = functools.partial(
            gevent.ssl.create_default_context, cafile=str(self.certificate)
        )
        self.client = https.InferenceServerClient(self.url, ssl=True, ssl_context_factory=verified)

    @classmethod
    def through(cls, passage: GatewayPass) -> TritonClient:
        """HTTP through the gateway with a client's key."""
        return cls(
            passage.url.split("://", 1)[1],
            "http",
            headers={"Authorization": f"Bearer {passage.key}"},
            certificate=passage.certificate,
        )

    def datatypes(self, model: str) -> dict[str, str]:
        """Input name -> datatype, from the served model's metadata (works for ensembles)."""
        meta = self.as_dict(self.client.get_model_metadata(model, headers=self.headers))
        return {i["name"]: i["datatype"] for i in meta["inputs"]}

    def infer(
        self,
        model: str,
        values: dict[str, Any],
        datatypes: dict[str, str] | None = None,
        outputs: list[str] | None = None,
        version: int | None = None,
    ) -> dict[str, npt.NDArray[Any]]:
        """{input: value} -> {output: numpy array}. Datatypes default to the server's metadata;
        pass spec_datatypes(spec) to type inputs from the spec instead. `version` None: the
        model's default (Triton: its highest loaded version)."""
        datatypes = datatypes or self.datatypes(model)
        inputs: list[Any] = []  # the protocol module's InferInput
        for name, value in values.items():
            array = as_typed(value, datatypes[name])
            tensor = self.module.InferInput(name, list(array.shape), datatypes[name])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested: list[Any] | None = (
            [self.module.InferRequestedOutput(n) for n in outputs] if outputs else None
        )
        result = self.client.infer(
            model, inputs, outputs=requested, headers=self.headers, model_version=str(version or "")
        )
        names = outputs or [o["name"] for o in self.as_dict(result.get_response())["outputs"]]
        answer: dict[str, npt.NDArray[Any]] = {}
        for name in names:
            array = result.as_numpy(name)
            if array is None:
                raise RuntimeError(f"{model}: no output {name!r} in the reply")
            answer[name] = array
        return answer

    def as_dict(self, reply: dict[str, Any] | Message) -> dict[str, Any]:
        """gRPC answers protobuf messages, HTTP JSON dicts: one shape for both."""
        if isinstance(reply, dict):  # HTTP
            return reply
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(reply, preserving_proto_field_name=True)

    def is_ready(self, model: str) -> bool:
        return bool(self.client.is_model_ready(model, headers=self.headers))

    def statistics(self, model: str) -> dict[str, Any]:
        """The server's inference statistics for one model, as JSON-like dicts either way
        (a restricted API: needs the admin key)."""
        header = ADMIN_HEADER if self.protocol == "http" else GRPC_ADMIN_HEADER
        headers = {**(self.headers or {}), header: self.admin_key or ""}
        return self.as_dict(self.client.get_inference_statistics(model, headers=headers))

    def close(self) -> None:
        self.client.close()


def batch_sizes(stats: dict[str, Any]) -> dict[int, int]:
    """{executed batch size: how many executions} from statistics(); sizes > 1 mean requests
    were batched together."""
    counts: dict[int, int] = {}
    for model in stats.get("model_stats", []):
        for entry in model.get("batch_stats", []):
            count = entry["compute_infer"]["count"]
            counts[int(entry["batch_size"])] = counts.get(int(entry["batch_size"]), 0) + int(count)
    return counts


def decode_labels(labels: npt.NDArray[Any]) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in labels.reshape(-1)]
