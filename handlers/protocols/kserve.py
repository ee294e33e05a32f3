"""KServe's two inference protocols, spoken by the TorchServe handler.

Behind KServe, TorchServe receives the body of `/v1/models/<m>:predict` or
`/v2/models/<m>/infer` as it was sent (we set no TorchServe envelope), so the handler reads:

- v1: {"instances": [example, ...]}: each example as the model's JSON input takes it, a string
  for text models, {"b64": "<base64>"} for image bytes, {input: example} with several inputs;
  answered {"predictions": [answer, ...]}.
- v2 (Open Inference Protocol): {"id"?, "inputs": [{"name", "shape", "datatype", "data"}],
  "outputs"?: [{"name"}]}: either the model's input tensors (answered with its output tensors,
  as Triton's tensor model answers) or one BYTES input named like the Triton ensemble's (TEXT:
  strings, IMAGE: base64), answered like the ensemble (label, score) for classifiers.

A malformed body in either protocol raises RequestError (a 400 answered as {"error": ...}).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from handlers.preprocessing.dtypes import BYTES, spec_dtype_of_numpy, triton_datatype
from handlers.preprocessing.processing import RequestError
from handlers.preprocessing.tensors import numeric_array
from handlers.protocols.base import is_json_array, is_json_object

if TYPE_CHECKING:
    from handlers.plan import ServingPlan
    from handlers.preprocessing.kinds import Kind
    from handlers.preprocessing.tensors import TensorSpec


class Pipeline(Protocol):
    """What the readers below use of handlers/preprocessing/pipeline.py's Pipeline, which calls
    them: named here so that this module never imports the pipeline back."""

    @property
    def plan(self) -> ServingPlan: ...
    @property
    def inputs(self) -> list[TensorSpec]: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def max_batch(self) -> int: ...
    def parse_tensors(self, tensors: Any) -> tuple[dict[str, NDArray[Any]], bool]: ...
    def check_mask(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]: ...
    def check_rows(self, tensor: TensorSpec, rows: NDArray[Any]) -> NDArray[Any]: ...


V1, V2 = "v1", "v2"
V1_KEYS = {"instances", "parameters"}
V2_KEYS = {"id", "inputs", "outputs", "parameters"}
V2_INPUT_KEYS = {"name", "shape", "datatype", "data"}


@dataclass(frozen=True)
class Envelope:
    """What a request said about its protocol, so that its answer is in the same one."""

    protocol: str  # v1 | v2
    tensors: bool = False  # v2: model tensors in, model tensors out
    request_id: str | None = None
    wanted: tuple[str, ...] = ()  # v2 "outputs": the outputs asked for (all if empty)


def protocol_of(body: dict[str, Any]) -> str | None:
    """v1 for {"instances"}, v2 for {"inputs": [{"name", ..., "data"}]}, None for our own JSON."""
    if "instances" in body:
        return V1
    inputs = body.get("inputs")
    if (
        is_json_array(inputs)
        and inputs
        and all(is_json_object(i) and {"name", "data"} <= set(i) for i in inputs)
    ):
        return V2
    return None


def refuse_unknown(body: dict[str, Any], allowed: set[str], protocol: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(
            f"KServe {protocol} request: unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )


def b64_bytes(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise RequestError(f"{where}: not valid base64", "decode") from None


# --- v1 -------------------------------------------------------------------------------------


def parse_v1(pipeline: Pipeline, body: dict[str, Any]) -> tuple[dict[str, NDArray[Any]], Envelope]:
    refuse_unknown(body, V1_KEYS, V1)
    instances = body["instances"]
    if not is_json_array(instances) or not instances:
        raise RequestError('KServe v1 request: "instances" must be a non-empty list of examples')
    envelope = Envelope(V1)
    if (
        pipeline.kind.ensemble_input
        and all(isinstance(i, (str, dict)) for i in instances)
        and (
            any(isinstance(i, str) for i in instances) or all(set(i) == {"b64"} for i in instances)
        )
    ):
        items: list[bytes | str] = [
            b64_bytes(i.get("b64"), f"instances[{n}].b64") if is_json_object(i) else i
            for n, i in enumerate(instances)
        ]
        return pipeline.kind.decode_items(items, pipeline.inputs, pipeline.max_batch), envelope
    batched = bool(pipeline.max_batch)
    if not batched and len(instances) != 1:
        raise RequestError(
            f"KServe v1 request: {len(instances)} instances; this model has no batch axis: "
            "send exactly one"
        )
    if len(pipeline.inputs) > 1:
        names = [t.name for t in pipeline.inputs]
        if not all(is_json_object(i) and set(i) == set(names) for i in instances):
            raise RequestError(
                f"KServe v1 request: this model has several inputs: send each instance as "
                f"{{{', '.join(repr(n) for n in names)}: example}}"
            )
        tensors = {n: [i[n] for i in instances] for n in names} if batched else instances[0]
        inputs, _ = pipeline.parse_tensors(tensors)
        return inputs, envelope
    value = instances if batched else instances[0]  # no batch axis: the one instance whole
    inputs, _ = pipeline.kind.json_inputs(value, pipeline.inputs, pipeline.max_batch)
    return inputs, envelope


def v1_answer(answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"predictions": answers}


# --- v2 -------------------------------------------------------------------------------------


def parse_v2(pipeline: Pipeline, body: dict[str, Any]) -> tuple[dict[str, NDArray[Any]], Envelope]:
    refuse_unknown(body, V2_KEYS, V2)
    by_name: dict[str, dict[str, Any]] = {}
    for n, tensor in enumerate(body["inputs"]):
        missing = sorted(V2_INPUT_KEYS - set(tensor))
        if missing:
            raise RequestError(f"KServe v2 request: inputs[{n}] lacks {missing}")
        by_name[tensor["name"]] = tensor
    envelope = Envelope(
        V2, request_id=body.get("id"), wanted=requested_outputs(body.get("outputs"))
    )
    names = [t.name for t in pipeline.inputs]
    if set(by_name) == set(names):
        rows = {
            t.name: pipeline.check_rows(t, v2_array(by_name[t.name], t)) for t in pipeline.inputs
        }
        check_wanted(envelope.wanted, answered_outputs(pipeline.plan, tensors=True))
        return pipeline.check_mask(rows), replace(envelope, tensors=True)
    encoded = pipeline.kind.ensemble_input
    if encoded and set(by_name) == {encoded}:
        check_wanted(
            envelope.wanted, answered_outputs(pipeline.plan, tensors=False)
        )  # before the model runs
        items = v2_items(by_name[encoded], image=pipeline.kind.base64_in_json)
        return pipeline.kind.decode_items(items, pipeline.inputs, pipeline.max_batch), envelope
    accepted = f"the model's input tensors {names}" + (
        f", or one BYTES input {encoded!r}" if encoded else ""
    )
    raise RequestError(f"KServe v2 request: inputs {sorted(by_name)}; send {accepted}")


def labelled(plan: ServingPlan, tensors: bool) -> bool:
    """An encoded request to a classifier is answered with label and score, as the Triton
    ensemble answers; anything else with the model's output tensors."""
    return not tensors and plan.task.serving.labelled


def answered_outputs(plan: ServingPlan, tensors: bool) -> list[str]:
    return ["label", "score"] if labelled(plan, tensors) else plan.output_names


def check_wanted(wanted: tuple[str, ...], answered: list[str]) -> None:
    unknown = sorted(set(wanted) - set(answered))
    if unknown:
        raise RequestError(
            f"KServe v2 request: unknown output(s) {unknown}; this model answers {answered}"
        )


def requested_outputs(outputs: Any) -> tuple[str, ...]:
    if outputs is None:
        return ()
    if not is_json_array(outputs) or not all(
        is_json_object(o) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise RequestError('KServe v2 request: "outputs" must be a list of {"name": ...}')
    return tuple(o["name"] for o in outputs)


def declared_shape(tensor: dict[str, Any]) -> list[int]:
    shape = tensor["shape"]
    if not is_json_array(shape) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RequestError(
            f'input {tensor["name"]!r}: "shape" must be a list of non-negative integers'
        )
    return shape


def v2_array(tensor: dict[str, Any], spec: TensorSpec) -> NDArray[Any]:
    """One v2 input tensor -> rows of the spec's tensor: datatype, element count and shape checked
    (data may be flat, row-major, as the protocol says, or nested)."""
    expected = triton_datatype(spec.dtype)
    if tensor["datatype"] != expected:
        raise RequestError(
            f"input {spec.name!r}: datatype {tensor['datatype']!r}, expected {expected!r}", "dtype"
        )
    shape = declared_shape(tensor)
    values = numeric_array(tensor["data"], spec.name, spec.numpy).reshape(-1)
    if values.size != math.prod(shape):
        raise RequestError(f"input {spec.name!r}: {values.size} values for shape {shape}", "shape")
    return values.reshape(shape)


def v2_items(tensor: dict[str, Any], image: bool) -> list[bytes | str]:
    if tensor["datatype"] != BYTES:
        raise RequestError(
            f"input {tensor['name']!r}: datatype {tensor['datatype']!r}, expected 'BYTES'", "dtype"
        )
    shape = declared_shape(tensor)
    data = tensor["data"]
    data = data if is_json_array(data) else [data]
    if not data or not all(isinstance(d, str) for d in data) or len(data) != math.prod(shape):
        raise RequestError(
            f"input {tensor['name']!r}: expected {math.prod(shape)} string(s) for shape {shape}"
            + (" (base64 image bytes)" if image else "")
        )
    return (
        [b64_bytes(d, f"input {tensor['name']!r}[{n}]") for n, d in enumerate(data)]
        if image
        else data
    )


def v2_tensor(name: str, array: NDArray[Any]) -> dict[str, Any]:
    array = np.asarray(array)
    if array.dtype == np.object_:
        return {
            "name": name,
            "datatype": BYTES,
            "shape": list(array.shape),
            "data": array.reshape(-1).tolist(),
        }
    return {
        "name": name,
        "datatype": triton_datatype(spec_dtype_of_numpy(array.dtype)),
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }


def v2_answer(
    plan: ServingPlan,
    envelope: Envelope,
    outputs: list[NDArray[Any]],
    answers: list[dict[str, Any]],
) -> dict[str, Any]:
    """Output tensors for a tensor request; label and score (as Triton's ensemble answers) for an
    encoded one to a classifier; only the outputs asked for (checked when the request was read)."""
    tensors: dict[str, NDArray[Any]]
    if not labelled(plan, envelope.tensors):
        tensors = {t.name: o for t, o in zip(plan.outputs, outputs)}
    else:
        tensors = {
            "label": np.array([[a["label"]] for a in answers], dtype=np.object_),
            "score": np.array([[a["score"]] for a in answers], dtype=np.float32),
        }
    chosen = [n for n in tensors if not envelope.wanted or n in envelope.wanted]
    answer: dict[str, Any] = {
        "model_name": plan.name,
        "model_version": str(plan.version),
        "outputs": [v2_tensor(n, tensors[n]) for n in chosen],
    }
    return answer | ({"id": envelope.request_id} if envelope.request_id is not None else {})


def answer(
    plan: ServingPlan,
    envelope: Envelope,
    outputs: list[NDArray[Any]],
    answers: list[dict[str, Any]],
) -> dict[str, Any]:
    return (
        v1_answer(answers)
        if envelope.protocol == V1
        else v2_answer(plan, envelope, outputs, answers)
    )
