"""KServe's v1 and v2 bodies through the TorchServe handler (fake context, real archives): the
same answers as the handler's own JSON and as eager PyTorch's golden outputs, in the protocol
of the request; malformed bodies of either protocol get a 400 naming the problem."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from handlers.adapters.torchserve_handler import SpecHandler
from tests.conftest import LAYOUT, REPO, TENSOR_EXAMPLES
from tests.fakes import FakeTorchServeContext, unpacked_archive

# These tests serve the example models' built artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    loaded = {}
    for name in SPEC:
        handler = SpecHandler()
        handler.initialize(
            FakeTorchServeContext(unpacked_archive(name, tmp_path_factory.mktemp(name)), [])
        )
        loaded[name] = handler
    return loaded


def call(handler, *bodies):
    context = FakeTorchServeContext(None, ["application/json"] * len(bodies))
    answers = handler.handle([{"body": json.dumps(b).encode()} for b in bodies], context)
    return [json.loads(a) for a in answers], [
        context.statuses.get(i, 200) for i in range(len(bodies))
    ]


def golden(name: str):
    return np.load(LAYOUT.artifact_dir(SPEC[name]) / "golden.npz")


def v2_inputs(name: str, rows: int) -> dict:
    data = golden(name)
    return {
        "inputs": [
            {
                "name": t.name,
                "shape": list(data[f"input.{t.name}"][:rows].shape),
                "datatype": {"float32": "FP32", "int64": "INT64"}[t.dtype],
                "data": data[f"input.{t.name}"][:rows].reshape(-1).tolist(),
            }
            for t in SPEC[name].inputs
        ]
    }


@pytest.mark.parametrize("name", sorted(SPEC))
def test_v2_tensors_answer_the_golden_outputs(handlers, name):
    (answer,), (status,) = call(handlers[name], {"id": "r-7", **v2_inputs(name, 3)})
    assert status == 200, answer
    assert answer["model_name"] == name and answer["id"] == "r-7"
    data = golden(name)
    for tensor, out in zip(SPEC[name].outputs, answer["outputs"]):
        assert out["name"] == tensor.name and out["datatype"] == "FP32"
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, data[f"output.{tensor.name}"][:3], rtol=1e-3, atol=1e-4)


def test_v2_requested_outputs_and_unknown_ones(handlers):
    body = {**v2_inputs("tabular_mlp", 1), "outputs": [{"name": "nope"}]}
    (answer,), (status,) = call(handlers["tabular_mlp"], body)
    assert status == 400 and "unknown output(s) ['nope']" in answer["error"]


def test_v1_instances_match_the_handlers_own_json(handlers):
    png = sorted((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png"))[:2]
    b64 = [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in png]
    (answer,), (status,) = call(handlers["digits_cnn"], {"instances": b64})
    assert status == 200 and [p["label"] for p in answer["predictions"]] == [
        p.stem.split("_")[1] for p in png
    ]
    texts = ["a wonderful, moving film", "dull and far too long"]
    (v1, own), statuses = call(handlers["sentiment_lstm"], {"instances": texts}, {"inputs": texts})
    assert statuses == [200, 200] and v1["predictions"] == own
    rows = [[0.5] * 30, [-1.0] * 30]  # raw features: both forms standardize them
    (v1, own), statuses = call(handlers["tabular_mlp"], {"instances": rows}, {"inputs": rows})
    assert statuses == [200, 200] and v1["predictions"] == own


def test_v2_bytes_input_answers_like_the_triton_ensemble(handlers):
    png = sorted((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png"))[0]
    body = {
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(png.read_bytes()).decode()],
            }
        ]
    }
    (answer,), (status,) = call(handlers["digits_cnn"], body)
    assert status == 200, answer
    label, score = answer["outputs"]
    assert label == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [1, 1],
        "data": [png.stem.split("_")[1]],
    }
    assert score["name"] == "score" and 0 < score["data"][0] <= 1
    text = {
        "inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]
    }
    (answer,), (status,) = call(handlers["sentiment_lstm"], text)
    assert status == 200 and answer["outputs"][0]["shape"] == [2, 1]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": []}, "non-empty list"),
        ({"instances": [[1, 2]]}, "expected shape"),
        ({"instances": [[0.1] * 30], "extra": 1}, "unknown key(s) ['extra']"),
        ({"inputs": [{"name": "features", "data": [1.0]}]}, "lacks ['datatype', 'shape']"),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}
                ]
            },
            "datatype 'FP64', expected 'FP32'",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [2, 30], "datatype": "FP32", "data": [0.0] * 30}
                ]
            },
            "30 values for shape [2, 30]",
        ),
        (
            {"inputs": [{"name": "wrong", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
            "send the model's input tensors ['features']",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": [1, 30], "datatype": "FP32", "data": ["x"] * 30}
                ]
            },
            "expected a (nested) list of numbers",
        ),
        (
            {
                "inputs": [
                    {"name": "features", "shape": "1,30", "datatype": "FP32", "data": [0.0] * 30}
                ]
            },
            '"shape" must be a list',
        ),
    ],
)
def test_bad_kserve_bodies_get_a_400_naming_the_problem(handlers, body, message):
    (answer,), (status,) = call(handlers["tabular_mlp"], body)
    assert status == 400 and message in answer["error"], answer


def test_bad_base64_and_bytes_datatype(handlers):
    (a, b), statuses = call(
        handlers["digits_cnn"],
        {"instances": [{"b64": "not base64!"}]},
        {"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
    )
    assert statuses == [400, 400]
    assert "not valid base64" in a["error"] and "expected 'BYTES'" in b["error"]


def test_unknown_outputs_are_refused_before_the_model_runs(handlers):
    from handlers.preprocessing.pipeline import Pipeline

    pipeline = Pipeline(handlers["sentiment_lstm"].engine.core.plan)
    texts = {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["fine"]}]}
    with pytest.raises(
        Exception,
        match=r"unknown output\(s\) \['logits'\]; this model answers \['label', 'score'\]",
    ):
        pipeline.parse_request(
            json.dumps({**texts, "outputs": [{"name": "logits"}]}), "application/json"
        )
    (answer,), (status,) = call(
        handlers["sentiment_lstm"], {**texts, "outputs": [{"name": "score"}]}
    )
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["score"]


def test_form_encoded_body_names_the_content_type(handlers):
    context = FakeTorchServeContext(None, ["application/x-www-form-urlencoded"])
    (answer,) = handlers["tabular_mlp"].handle([{"body": b""}], context)
    assert (
        context.statuses[0] == 400
        and "curl -H 'Content-Type: application/json'" in json.loads(answer)["error"]
    )
