"""Bad input on every zoo model stays a 4xx with a message, on both runtimes' handlers, and the
model answers a valid request right after.

What the runtimes answer before our code runs (documented in docs/verification.md): Triton checks
shapes and dtypes against config.pbtxt itself (400), and its HTTP frontend answers 500 to
JSON it cannot parse; TorchServe resets the connection on a body over max_request_size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from handlers.preprocessing.tensors import dtype_limits
from scripts.pipeline.paths import golden_examples
from scripts.runtimes.torchserve.client import TorchServeClient, TorchServeError
from scripts.runtimes.triton.client import TritonClient, spec_datatypes, wire_shapes
from scripts.spec import load_spec
from tests.conftest import LAYOUT, ZOO_SPEC

ZOO = {m.name: m for m in load_spec(ZOO_SPEC).models if m.task.generation is None}  # tensors


def one_row(name: str) -> dict[str, np.ndarray]:
    """One golden request: a row of a batched model, the whole tensors of one without a batch
    axis."""
    return golden_examples(ZOO[name], LAYOUT, 1)[0]


def tensors_body(inputs: dict[str, np.ndarray]) -> dict:
    return {"tensors": {k: np.asarray(v).tolist() for k, v in inputs.items()}}


def bad_bodies(name: str) -> dict[str, str | dict]:
    """Deep nesting, numbers no dtype holds, too big for the input's dtype, wrong shapes."""
    spec, row = ZOO[name], one_row(name)
    first = spec.inputs[0].name
    bodies = {
        "nested 10,000 deep": '{"inputs": ' + "[" * 10_000 + "]" * 10_000 + "}",
        "nested 10,000 deep (tensors)": '{"tensors": {"%s": ' % first
        + "[" * 10_000
        + "]" * 10_000
        + "}}",
        "1e999 (infinity)": json.dumps(tensors_body(row)).replace(
            json.dumps(np.asarray(row[first]).reshape(-1)[0].item()), "1e999", 1
        ),
    }
    for t in spec.inputs:
        value = row[t.name]
        if len(t.shape) == 1:  # a per-sample scalar sent as a column
            wrong = dict(row, **{t.name: value[:, None]})
        elif value.shape[-1] > 1:  # one value short (a doubled image would pass the size limit)
            wrong = dict(row, **{t.name: value[..., :-1]})
        else:
            wrong = dict(row, **{t.name: np.concatenate([value, value], axis=-1)})
        bodies[f"wrong shape of {t.name}"] = tensors_body(wrong)
        if t.dtype not in ("bool", "float64"):
            huge = dict(
                row,
                **{
                    t.name: np.full(
                        row[t.name].shape,
                        1e300 if t.dtype.startswith("float") else dtype_limits(t.numpy)[1] * 4,
                    )
                },
            )
            bodies[f"{t.name} beyond {t.dtype}"] = tensors_body(huge)
    return bodies


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ZOO))
def test_torchserve_handler_answers_400_to_bad_input(name, zoo_servers):
    client = TorchServeClient.for_server(zoo_servers["torchserve"])
    for what, body in bad_bodies(name).items():
        with pytest.raises(TorchServeError) as caught:
            client.predict(name, body, content_type="application/json")
        assert caught.value.status == 400 and caught.value.message, f"{what}: {caught.value}"
    assert client.predict(name, tensors_body(one_row(name)))  # still serving


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ZOO))
def test_triton_answers_400_to_wrong_shapes_and_out_of_range_values(name, zoo_servers):
    spec = ZOO[name]
    client = TritonClient(zoo_servers["triton"].http_url, "http")
    row = wire_shapes(spec, one_row(name))
    for t in spec.inputs:
        wrong = dict(row, **{t.name: np.concatenate([row[t.name]] * 2, axis=-1)})
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, wrong, spec_datatypes(spec))
        assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), (
            f"{t.name}: {caught.value}"
        )
    ranged = [
        t for t in spec.inputs if t.range is not None and t.range[1] < dtype_limits(t.numpy)[1]
    ]
    for t in ranged:  # values past the spec's range reach our model code: INVALID_ARG from us
        beyond = dict(row, **{t.name: np.full(row[t.name].shape, t.range[1] + 1, dtype=t.numpy)})
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, beyond, spec_datatypes(spec))
        assert caught.value.status() == "400" and "must lie in" in caught.value.message(), (
            caught.value
        )
    assert client.infer(name, row, spec_datatypes(spec))  # still serving
