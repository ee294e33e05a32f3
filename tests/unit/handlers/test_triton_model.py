"""The generated Python-backend model.py, driven in-process with a fake
triton_python_backend_utils."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict

from handlers.preprocessing.pipeline import Pipeline
from scripts.pipeline.plan import serving_plan
from scripts.pipeline.verify import compare
from scripts.runtimes.triton.configs import read_config
from scripts.runtimes.triton.repository import build_repository
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO, TENSOR_EXAMPLES
from tests.fakes import RecordedMetrics

# These tests serve the example models' built artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py


TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class TritonError:
    INVALID_ARG, INTERNAL, UNAVAILABLE = "INVALID_ARG", "INTERNAL", "UNAVAILABLE"

    def __init__(self, message, code=INTERNAL):
        self.message, self.code = message, code


class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self.outputs = {t.name: t.array for t in output_tensors or []}
        self.error = error


class MetricFamily:
    """pb_utils.MetricFamily; every value goes to METRICS."""

    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

    def __init__(self, name, description, kind):
        self.name, self.kind = name, kind

    def Metric(self, labels):  # noqa: N802 (Triton's name)
        assert self.kind == self.COUNTER
        family = self

        class Series:
            def increment(self, value):
                METRICS.add(family.name, labels.values(), value)

        return Series()


METRICS = RecordedMetrics()


def fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.MetricFamily = MetricFamily
    module.TritonError, module.Tensor, module.InferenceResponse = (
        TritonError,
        Tensor,
        InferenceResponse,
    )
    module.get_input_tensor_by_name = lambda request, name: request.get(name)
    module.TRITONSERVER_RESPONSE_COMPLETE_FINAL = TRITONSERVER_RESPONSE_COMPLETE_FINAL
    module.using_decoupled_model_transaction_policy = lambda config: config.get(
        "model_transaction_policy", {}
    ).get("decoupled", False)
    return module


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_repo")
    build_repository([SPEC["digits_cnn"], SPEC["sentiment_lstm"]], LAYOUT, folder)
    return folder


def load(repo, name: str, decoupled: bool = False):
    """model.py from the generated version dir, initialized as Triton would."""
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    spec = importlib.util.spec_from_file_location(
        f"triton_model_{name}", repo / name / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = MessageToDict(
        read_config(repo / name / "config.pbtxt"), preserving_proto_field_name=True
    )
    if decoupled:
        config["model_transaction_policy"] = {"decoupled": True}
    model.initialize({"model_config": json.dumps(config), "model_version": "1", "model_name": name})
    return model


class FakeRequest(dict):
    """A request's tensors by name, and the parameters tritonserver forwards (its headers)."""

    def __init__(self, tensors: dict, parameters: dict | None = None):
        super().__init__(tensors)
        self.forwarded = json.dumps(parameters or {})

    def parameters(self) -> str:
        return self.forwarded


def request(parameters: dict | None = None, **tensors):
    return FakeRequest({name: Tensor(name, value) for name, value in tensors.items()}, parameters)


def golden(name):
    return np.load(LAYOUT.artifacts / name / "1" / "golden.npz")


def test_requests_are_stacked_into_one_call_and_split_back(repo):
    model = load(repo, "digits_cnn")
    calls = []
    run = model.core.batcher.model
    model.core.batcher.model = lambda inputs: calls.append(len(inputs["image"])) or run(inputs)
    g = golden("digits_cnn")
    image, logits = g["input.image"], g["output.logits"]
    responses = model.execute([request(image=image[:2]), request(image=image[2:5])])
    assert calls == [5]
    assert [r.error for r in responses] == [None, None]
    for response, expected in zip(responses, (logits[:2], logits[2:5])):
        assert response.outputs["logits"].dtype == np.float32
        assert compare(response.outputs["logits"], expected, SPEC["digits_cnn"].tolerance).passed


def test_a_bad_request_gets_its_own_error_and_the_others_their_answers(repo):
    model = load(repo, "sentiment_lstm")
    tokens = golden("sentiment_lstm")["input.token_ids"]
    bad = tokens[:1].copy()
    bad[0, 0] = 10**6
    responses = model.execute(
        [request(token_ids=tokens[:2]), request(token_ids=bad), request(token_ids=tokens[2:3])]
    )
    assert responses[1].error.code == TritonError.INVALID_ARG
    assert "token_ids: values must lie in [0, 9999]" in responses[1].error.message
    assert responses[0].error is None and responses[0].outputs["logits"].shape == (2, 2)
    assert responses[2].error is None and responses[2].outputs["logits"].shape == (1, 2)


def test_a_failing_model_fails_its_requests_without_raising(repo):
    model = load(repo, "digits_cnn")

    def broken(inputs):
        raise RuntimeError("boom")

    model.core.batcher.model = broken
    responses = model.execute([request(image=golden("digits_cnn")["input.image"][:1])])
    assert responses[0].error.code == TritonError.INTERNAL and "boom" in responses[0].error.message


def test_a_decoupled_model_answers_through_each_requests_sender(repo):
    """A decoupled one-pass model answers through each request's response sender: exactly one
    response per request, flagged final, and execute() returns None."""

    class Sender:
        def __init__(self):
            self.sent = []

        def send(self, response=None, flags=0):
            self.sent.append((response, flags))

    class StreamedRequest(FakeRequest):
        def __init__(self, **tensors):
            super().__init__(request(**tensors))
            self.sender = Sender()

        def get_response_sender(self):
            return self.sender

    model = load(repo, "digits_cnn", decoupled=True)
    image = golden("digits_cnn")["input.image"]
    requests = [
        StreamedRequest(image=image[:2]),
        StreamedRequest(image=np.full_like(image[:1], np.nan)),
    ]
    assert model.execute(requests) is None
    ((good, flags),) = requests[0].sender.sent
    assert flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL and good.outputs["logits"].shape == (2, 10)
    ((bad, flags),) = requests[1].sender.sent
    assert flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert bad.error.code == TritonError.INVALID_ARG and "NaN" in bad.error.message


def test_preprocess_decodes_image_bytes_like_the_torchserve_pipeline(repo):
    model = load(repo, "digits_cnn_pre")
    png = (REPO / "checkpoints/digits_cnn/requests/digit_3.png").read_bytes()
    good = np.array([[png], [png]], dtype=np.object_)
    responses = model.execute(
        [request(IMAGE=good), request(IMAGE=np.array([[b"not an image"]], dtype=np.object_))]
    )
    expected = Pipeline(serving_plan(SPEC["digits_cnn"], LAYOUT)).parse(png, "image/png")[0][
        "image"
    ][0]
    assert responses[0].error is None
    assert np.array_equal(responses[0].outputs["image"], np.stack([expected, expected]))
    assert (
        responses[1].error.code == TritonError.INVALID_ARG
        and "cannot decode image" in responses[1].error.message
    )


def test_preprocess_tokenizes_text(repo):
    model = load(repo, "sentiment_lstm_pre")
    text = (REPO / "checkpoints/sentiment_lstm/requests/review_3200.txt").read_bytes()
    (response, empty) = model.execute(
        [
            request(TEXT=np.array([[text]], dtype=np.object_)),
            request(TEXT=np.array([[b"   "]], dtype=np.object_)),
        ]
    )
    expected = Pipeline(serving_plan(SPEC["sentiment_lstm"], LAYOUT)).parse(text, "text/plain")[0][
        "token_ids"
    ][0]
    token_ids = response.outputs["token_ids"]
    assert np.array_equal(token_ids[0], expected) and token_ids.dtype == np.int64
    assert empty.error.code == TritonError.INVALID_ARG and "empty text" in empty.error.message


def test_postprocess_returns_label_strings_and_scores(repo):
    model = load(repo, "digits_cnn_post")
    logits = golden("digits_cnn")["output.logits"][:3]
    (response,) = model.execute([request(logits=logits)])
    answers = Pipeline(serving_plan(SPEC["digits_cnn"], LAYOUT)).postprocess([logits])
    assert response.outputs["label"].dtype == np.object_ and response.outputs["label"].shape == (
        3,
        1,
    )
    assert [v.decode() for v in response.outputs["label"][:, 0]] == [a["label"] for a in answers]
    assert np.allclose(response.outputs["score"][:, 0], [a["score"] for a in answers])


def test_an_unknown_role_is_refused(repo):
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    model_py = repo / "digits_cnn" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("triton_model_role", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"input": [], "output": [], "parameters": {"role": {"string_value": "nope"}}}
    with pytest.raises(ValueError, match="role='nope'"):
        module.TritonPythonModel().initialize({"model_config": json.dumps(config)})


def test_one_example_of_a_multi_input_model_gets_one_answer():
    from handlers.preprocessing.pipeline import Pipeline
    from handlers.preprocessing.processing import RequestError
    from tests.conftest import ZOO_SPEC

    spec = next(m for m in load_spec(ZOO_SPEC).models if m.name == "zoo_two_tower")
    pipeline = Pipeline(serving_plan(spec, LAYOUT))
    rows, single = pipeline.parse(
        json.dumps({"inputs": {"dense": [0.5] * 8, "item_id": 3}}), "application/json"
    )
    assert single and rows["dense"].shape == (1, 8) and rows["item_id"].tolist() == [3]
    _, single = pipeline.parse(
        json.dumps({"inputs": {"dense": [[0.5] * 8], "item_id": [3]}}), "application/json"
    )
    assert not single
    with pytest.raises(RequestError, match="not a mix"):
        pipeline.parse(
            json.dumps({"inputs": {"dense": [0.5] * 8, "item_id": [3]}}), "application/json"
        )


def test_the_model_and_its_pre_processing_publish_their_stages_and_refusals(repo):
    """Triton: the pre-processing model counts the ensemble's encoded requests and refuses junk
    (decode); the model counts its tensor requests and the rows of the batch it ran."""
    METRICS.values.clear()
    model, pre = load(repo, "digits_cnn"), load(repo, "digits_cnn_pre")
    image = golden("digits_cnn")["input.image"]
    model.execute([request(image=image[:2]), request(image=image[2:3])])
    png = next((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png")).read_bytes()
    text = np.array([[png], [b"junk"]], dtype=np.object_)
    pre.execute(
        [request(**{pre.input_names[0]: text[:1]}), request(**{pre.input_names[0]: text[1:]})]
    )
    model.metrics.flush()  # else published within a second, by their own thread
    pre.metrics.flush()
    labels = ("digits_cnn", "1")
    assert METRICS.total("torchship_model_loads_total", *labels) == 2
    assert METRICS.total("torchship_requests_total", *labels, "tensors") == 2
    assert METRICS.total("torchship_requests_total", *labels, "encoded") == 2
    assert METRICS.total("torchship_rejected_total", *labels, "decode") == 1
    assert METRICS.total("torchship_batch_rows_total", *labels) == 3
    assert METRICS.total("torchship_stage_seconds_count", *labels, "model") == 1
    assert METRICS.total("torchship_stage_seconds_count", *labels, "preprocess") == 4
    assert METRICS.total("torchship_stage_seconds_bucket", *labels, "model", "+Inf") == 1


def test_requests_are_counted_by_the_gateways_client(repo):
    """tritonserver forwards the gateway's header as a request parameter (named as sent); a
    name no spec could give is counted as "other", a request without it as "direct"."""
    METRICS.values.clear()
    model = load(repo, "digits_cnn")
    image = golden("digits_cnn")["input.image"]
    model.execute([request({"x-torchship-client": "digits_app"}, image=image[:1])])
    model.execute(
        [
            request({"X-Torchship-Client": "digits_app"}, image=image[:1]),
            request({"x-torchship-client": "{bad}"}, image=image[:1]),
            request(image=image[:1]),
        ]
    )
    model.metrics.flush()
    requests = ("torchship_requests_total", "digits_cnn", "1", "tensors")
    assert METRICS.total(*requests, "digits_app") == 2
    assert METRICS.total(*requests, "other") == 1
    assert METRICS.total(*requests, "direct") == 1
