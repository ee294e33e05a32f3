"""The serving core with no runtime at all: plans written here, models as numpy functions that
record their calls (one test loads a real TorchScript file from a model dir)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError
from handlers.engines.serving_core import Answer, Request, ServingCore
from handlers.engines.forward import Forward

JSON = "application/json"
ERROR_KEYS = {"code", "type", "message", "error"}


def plan(inputs, outputs, task, **batching) -> ServingPlan:
    return ServingPlan.model_validate(
        {
            "name": "toy",
            "version": 3,
            "format": "torchscript",
            "inputs": inputs,
            "outputs": outputs,
            "task": task,
            "preprocess": {"kind": "none"},
            "serving": {},
            "batching": {"max_batch_size": 8, **batching},
        }
    )


CLASSIFIER = plan(
    [{"name": "features", "dtype": "float32", "shape": [-1, 3]}],
    [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
    {"kind": "classification", "labels": ["a", "b", "c"]},
)


def sequences(**batching) -> ServingPlan:
    return plan(
        [{"name": "ids", "dtype": "int64", "shape": [-1, -1], "range": [0, 99]}],
        [{"name": "total", "dtype": "float32", "shape": [-1, 1]}],
        {"kind": "regression"},
        **batching,
    )


class Model:
    """A model as the core sees one: {input: rows} -> [outputs]; records each call's inputs."""

    def __init__(self, forward=lambda inputs: [next(iter(inputs.values())).astype(np.float32)]):
        self.forward, self.calls = forward, []

    def __call__(self, inputs):
        self.calls.append({n: a.copy() for n, a in inputs.items()})
        return self.forward(inputs)

    @property
    def batch_sizes(self) -> list[int]:
        return [len(next(iter(c.values()))) for c in self.calls]


def sums(inputs):
    return [inputs["ids"].sum(axis=1, keepdims=True).astype(np.float32)]


def ask(core, *bodies, content_type=JSON) -> tuple[list, list[int]]:
    answers = core.answer(
        [Request(json.dumps(b) if not isinstance(b, bytes) else b, content_type) for b in bodies]
    )
    assert all(a.content_type == JSON for a in answers)
    return [json.loads(a.body) for a in answers], [a.status for a in answers]


def test_rows_of_the_same_shape_run_as_one_model_call(caplog):
    model = Model()
    core = ServingCore(CLASSIFIER, model)
    with caplog.at_level(logging.INFO, "handlers.engines.serving_core"):
        answers, statuses = ask(
            core, {"inputs": [0, 0, 1]}, {"inputs": [[1, 0, 0], [0, 1, 0]]}, {"inputs": [0, 5, 1]}
        )
    assert model.batch_sizes == [4] and statuses == [200, 200, 200]
    assert "batch of 3 request(s)" in caplog.text
    assert answers[0]["label"] == "c" and answers[2]["label"] == "b"  # one example: one object
    assert [a["label"] for a in answers[1]] == ["a", "b"]  # a list: a list
    assert answers[1][1]["outputs"]["logits"] == [0, 1, 0]


def test_a_bad_request_among_good_ones_gets_its_own_400():
    model = Model()
    core = ServingCore(CLASSIFIER, model)
    answers, statuses = ask(
        core,
        {"inputs": [0, 0, 1]},
        b"{not json",
        {"inputs": [1, 2]},
        {"inputs": [1, 0, 0]},
        {"inputs": [1, 0, 0], "extra": 1},
    )
    assert statuses == [200, 400, 400, 200, 400]
    assert model.batch_sizes == [2]  # the bad ones never reach the model
    assert [answers[0]["label"], answers[3]["label"]] == ["c", "a"]
    for bad in (answers[1], answers[2], answers[4]):
        assert set(bad) == ERROR_KEYS and bad["code"] == 400 and bad["type"] == "InvalidInput"
        assert bad["message"] == bad["error"]
    assert "not valid JSON" in answers[1]["message"]
    assert "expected shape [3] per example" in answers[2]["message"]
    assert "unknown key(s) ['extra']" in answers[4]["message"]


def test_different_lengths_run_in_one_call_per_length():
    model = Model(sums)
    core = ServingCore(sequences(), model)
    answers, statuses = ask(core, {"inputs": [1, 2]}, {"inputs": [1, 2, 3]}, {"inputs": [4, 5]})
    assert statuses == [200] * 3 and sorted(model.batch_sizes) == [1, 2]
    assert [a["outputs"]["total"] for a in answers] == [[3], [6], [9]]


def test_padded_batching_stacks_every_length_into_one_call():
    model = Model(sums)
    core = ServingCore(sequences(pad={"value": 7}), model)
    answers, _ = ask(core, {"inputs": [1, 2]}, {"inputs": [1, 2, 3]})
    (call,) = model.calls
    assert call["ids"].tolist() == [[1, 2, 7], [1, 2, 3]]  # padded at the end with pad.value
    assert [a["outputs"]["total"] for a in answers] == [[10], [6]]


def test_a_model_that_fails_on_the_batch_is_retried_request_by_request():
    def fragile(inputs):
        if len(inputs["features"]) > 1:
            raise RuntimeError("out of memory on a batch")
        return [inputs["features"]]

    model = Model(fragile)
    answers, statuses = ask(
        ServingCore(CLASSIFIER, model), {"inputs": [1, 0, 0]}, {"inputs": [0, 1, 0]}
    )
    assert statuses == [200, 200] and model.batch_sizes == [2, 1, 1]
    assert [a["label"] for a in answers] == ["a", "b"]


def test_the_request_the_model_cannot_run_gets_a_500_alone():
    def poisoned(inputs):
        if (inputs["features"] == 13).any():
            raise ValueError("13 is unlucky")
        return [inputs["features"]]

    answers, statuses = ask(
        ServingCore(CLASSIFIER, Model(poisoned)),
        {"inputs": [1, 0, 0]},
        {"inputs": [13, 0, 0]},
        {"inputs": [0, 0, 1]},
    )
    assert statuses == [200, 500, 200]
    assert answers[1] == {
        "code": 500,
        "type": "InferenceError",
        "message": "inference failed: ValueError: 13 is unlucky",
        "error": "inference failed: ValueError: 13 is unlucky",
    }


def test_a_bug_of_ours_in_pre_processing_is_a_500_naming_the_stage(monkeypatch):
    core = ServingCore(CLASSIFIER, Model())
    parse = core.pipeline.parse_request

    def buggy(body, content_type):
        if "bug" in body:
            raise KeyError("oops")
        return parse(body, content_type)

    monkeypatch.setattr(core.pipeline, "parse_request", buggy)
    answers, statuses = ask(core, {"inputs": "bug"}, {"inputs": [1, 0, 0]})
    assert statuses == [500, 200] and answers[1]["label"] == "a"
    assert answers[0]["message"] == "pre-processing failed: KeyError: 'oops'"
    assert answers[0]["type"] == "InferenceError" and set(answers[0]) == ERROR_KEYS


def test_a_bug_of_ours_in_post_processing_is_a_500_naming_the_stage(monkeypatch):
    core = ServingCore(CLASSIFIER, Model())
    postprocess = core.pipeline.postprocess

    def buggy(outputs):
        if outputs[0][0, 1] == 1:
            raise KeyError("oops")
        return postprocess(outputs)

    monkeypatch.setattr(core.pipeline, "postprocess", buggy)
    answers, statuses = ask(core, {"inputs": [1, 0, 0]}, {"inputs": [0, 1, 0]})
    assert statuses == [200, 500] and answers[0]["label"] == "a"
    assert answers[1]["message"] == "post-processing failed: KeyError: 'oops'"


def test_kserve_v1_and_v2_are_answered_in_their_protocol():
    core = ServingCore(CLASSIFIER, Model())
    rows = [[1, 0, 0], [0, 0, 2]]
    v2 = {
        "id": "r-1",
        "inputs": [
            {"name": "features", "shape": [2, 3], "datatype": "FP32", "data": [1, 0, 0, 0, 0, 2]}
        ],
        "outputs": [{"name": "logits"}],
    }
    (v1_answer, own, v2_answer), statuses = ask(core, {"instances": rows}, {"inputs": rows}, v2)
    assert statuses == [200, 200, 200]
    assert v1_answer == {"predictions": own}
    assert v2_answer == {
        "model_name": "toy",
        "model_version": "3",
        "id": "r-1",
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [2, 3], "data": [1, 0, 0, 0, 0, 2]}
        ],
    }
    (bad,), (status,) = ask(core, {**v2, "outputs": [{"name": "nope"}]})
    assert status == 400 and "unknown output(s) ['nope']" in bad["error"]


def test_tensor_requests_are_answered_with_tensors():
    model = Model(sums)
    core = ServingCore(sequences(), model)
    good, bad, missing = core.answer(
        [
            Request(tensors={"ids": np.array([[1, 2], [3, 4]])}),
            Request(tensors={"ids": np.array([[100, 0]])}),
            Request(tensors={}),
        ]
    )
    assert good.ok and good.tensors[0].tolist() == [[3], [7]]
    assert bad.status == 400 and "ids: values must lie in [0, 99]" in bad.message
    assert missing.status == 500 and missing.message.startswith("reading the request failed")


def test_a_never_batched_model_answers_each_request_with_its_whole_outputs():
    model = Model(lambda inputs: [np.arange(5, dtype=np.float32)])  # length not the rows'
    core = ServingCore(sequences(max_batch_size=0), model)
    answers, statuses = ask(core, {"inputs": [[1, 2]]}, {"inputs": [[3, 4]]})
    assert statuses == [200, 200] and model.batch_sizes == [1, 1]
    assert answers == [{"outputs": {"total": [0, 1, 2, 3, 4]}}] * 2


def test_the_forward_engine_answers_every_admitted_request_in_one_step():
    """admit / step / cancel over the serving core: each answer final, a cancelled request
    gets none, and nothing is left after the step."""
    engine = Forward(ServingCore(CLASSIFIER, Model()))
    engine.admit("a", Request(json.dumps({"inputs": [1, 0, 0]}), JSON))
    engine.admit("b", Request(b"", JSON))
    engine.admit("gone", Request(json.dumps({"inputs": [1, 0, 0]}), JSON))
    engine.cancel("gone")
    answers = engine.step()
    assert {k: (a.status, a.final) for k, a in answers.items()} == {
        "a": (200, True),
        "b": (400, True),
    }
    assert not engine.busy and engine.step() == {}


def test_failed_answers_carry_the_json_error_body():
    from handlers.engines.batching import Failure

    answer = Answer.failed(Failure(503, "busy"))
    assert not answer.ok and answer.reason == "Service Unavailable" and answer.message == "busy"
    assert json.loads(answer.body) == {
        "code": 503,
        "type": "InferenceError",
        "message": "busy",
        "error": "busy",
    }


def test_load_reads_the_plan_and_the_exported_model_from_a_model_dir(tmp_path):
    import torch

    from models.tabular import TabularMLP

    torch.manual_seed(0)
    tiny = plan(
        [{"name": "features", "dtype": "float32", "shape": [-1, 30]}],
        [{"name": "probability", "dtype": "float32", "shape": [-1, 1]}],
        {"kind": "classification", "labels": ["malignant", "benign"], "output": "probabilities"},
    )
    tiny.save(tmp_path)
    torch.jit.trace(TabularMLP(30, 16).eval(), torch.zeros(2, 30)).save(
        str(tmp_path / tiny.artifact)
    )
    core = ServingCore.load(tmp_path)
    answers, statuses = ask(core, {"inputs": [0.5] * 30}, {"inputs": [[0.5] * 30, [0.1] * 30]})
    assert statuses == [200, 200]
    assert answers[0]["label"] in ("malignant", "benign") and len(answers[1]) == 2
    assert answers[0]["outputs"] == answers[1][0]["outputs"]


def detector(preprocess=None) -> ServingPlan:
    """A model without a batch axis: one [3, 4, 4] image in, N detections out."""
    layout = plan(
        [{"name": "image", "dtype": "float32", "shape": [3, 4, 4], "range": [0, 1]}],
        [
            {"name": "boxes", "dtype": "float32", "shape": [-1, 4]},
            {"name": "count", "dtype": "int64", "shape": [1]},
        ],
        {"kind": "raw"},
        max_batch_size=0,
    )
    if preprocess:
        return ServingPlan.model_validate({**layout.model_dump(), "preprocess": preprocess})
    return layout


def detections(inputs):
    found = int(inputs["image"].shape == (3, 4, 4)) * 2  # anything else would be a bug here
    return [np.ones((found, 4), np.float32), np.array([found])]


def test_a_model_without_a_batch_axis_takes_the_tensor_as_it_is_and_answers_whole():
    model = Model(detections)
    core = ServingCore(detector(), model)
    image = np.full((3, 4, 4), 0.5).tolist()
    answers, statuses = ask(core, {"inputs": image}, {"tensors": {"image": image}})
    assert statuses == [200, 200]
    assert answers == [{"outputs": {"boxes": [[1.0] * 4] * 2, "count": [2]}}] * 2
    assert [c["image"].shape for c in model.calls] == [(3, 4, 4)] * 2  # never stacked


def test_a_batch_sent_to_a_model_without_a_batch_axis_is_refused_naming_the_shape():
    core = ServingCore(detector(), Model(detections))
    answers, statuses = ask(core, {"inputs": np.zeros((1, 3, 4, 4)).tolist()})
    assert statuses == [400]
    assert answers[0]["message"].startswith(
        "image: expected one tensor of shape [3, 4, 4] (this model has no batch axis), "
        "got [1, 3, 4, 4]"
    )


def test_image_bytes_become_the_one_tensor_of_a_model_without_a_batch_axis():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, format="PNG")
    image = {"kind": "image", "height": 4, "width": 4, "grayscale": False}
    model = Model(detections)
    core = ServingCore(detector(image), model)
    answers, statuses = ask(core, buffer.getvalue(), content_type="image/png")
    assert statuses == [200] and answers[0]["outputs"]["count"] == [2]
    assert model.calls[0]["image"][:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(RequestError, match="2 items in one request; this model has no batch"):
        core.pipeline.kind.decode_items([buffer.getvalue()] * 2, core.plan.inputs, 0)


def test_kserve_bodies_for_a_model_without_a_batch_axis_carry_one_whole_example():
    core = ServingCore(detector(), Model(detections))
    image = np.full((3, 4, 4), 0.5)
    v2 = {"inputs": [{"name": "image", "shape": [3, 4, 4], "datatype": "FP32"}]}
    v2["inputs"][0]["data"] = image.reshape(-1).tolist()
    answers, statuses = ask(
        core, {"instances": [image.tolist()]}, v2, {"instances": [image.tolist()] * 2}
    )
    assert statuses == [200, 200, 400]
    assert answers[0] == {"predictions": [{"outputs": {"boxes": [[1.0] * 4] * 2, "count": [2]}}]}
    assert {o["name"]: o["shape"] for o in answers[1]["outputs"]} == {"boxes": [2, 4], "count": [1]}
    assert "2 instances; this model has no batch axis: send exactly one" in answers[2]["message"]


def test_a_bare_number_for_a_tensor_input_is_a_400_not_a_crash():
    """Found by the property test on a served image model: a scalar where rows belong."""
    digits = plan(
        [{"name": "image", "dtype": "float32", "shape": [-1, 1, 4, 4]}],
        [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
        {"kind": "classification", "labels": ["a", "b", "c"]},
    )
    image = {"kind": "image", "height": 4, "width": 4}
    digits = ServingPlan.model_validate({**digits.model_dump(), "preprocess": image})
    for served in (digits, detector(), detector(image)):
        answers, statuses = ask(ServingCore(served, Model()), 0.0, {"inputs": 0.0})
        assert statuses == [400, 400], answers
        assert "expected" in answers[0]["message"], answers


def test_every_refusal_is_counted_by_reason_and_a_broken_metric_costs_no_answer(caplog):
    """The reasons a 4xx is counted under; a sink that raises is logged once, answers go on."""
    from handlers.metrics import ModelMetrics
    from tests.fakes import RecordedMetrics

    class Sink(RecordedMetrics):
        def record(self, metric, value, labels):
            self.add(metric.name, labels, value)

    sink = Sink()
    core = ServingCore(sequences(), Model(sums), ModelMetrics("toy", 3, sink))
    _, statuses = ask(
        core,
        {"inputs": [[1, 2]]},
        b"{not json",
        {"inputs": [[1, 200]]},
        {"inputs": [[1.5, 2]]},
        {"inputs": [[1, 2]] * 9},
        {"inputs": [1, 2], "extra": 0},
    )
    assert statuses == [200, 400, 400, 400, 400, 400]
    core.metrics.flush()
    rejected = {
        reason: sink.total("torchship_rejected_total", "toy", "3", reason)
        for reason in ("decode", "range", "dtype", "size", "invalid")
    }
    assert rejected == {"decode": 1, "range": 1, "dtype": 1, "size": 1, "invalid": 1}
    assert sink.total("torchship_requests_total", "toy", "3", "json") == 6
    assert sink.total("torchship_batch_rows_total", "toy", "3") == 1

    class Broken:
        def record(self, metric, value, labels):
            raise RuntimeError("sink down")

    core = ServingCore(sequences(), Model(sums), ModelMetrics("toy", 3, Broken()))
    with caplog.at_level(logging.ERROR, "handlers.metrics"):
        _, statuses = ask(core, {"inputs": [[1, 2]]}, {"inputs": [[3, 4]]})
        core.metrics.flush()
        core.metrics.flush()
    assert statuses == [200, 200]
    assert caplog.text.count("metric torchship_requests_total not recorded") == 1


def test_a_tensor_request_alone_is_answered_as_it_came_and_counted_once():
    """The lone-request path (Triton at low load): the model gets the client's array itself
    (no stacking copy), answers and refusals are those of the batched path, and its metrics are
    the same series."""
    model = Model(sums)
    core = ServingCore(sequences(), model)
    ids = np.array([[1, 2], [3, 4]], dtype=np.int64)
    (alone,) = core.answer([Request(tensors={"ids": ids})])
    assert alone.ok and alone.tensors[0].tolist() == [[3], [7]]
    assert len(model.calls) == 1 and np.shares_memory(core.checked({"ids": ids})["ids"], ids)
    (out_of_range,) = core.answer([Request(tensors={"ids": np.array([[100, 0]])})])
    assert out_of_range.status == 400 and "ids: values must lie in [0, 99]" in out_of_range.message
    (missing,) = core.answer([Request(tensors={})])
    assert missing.status == 500 and missing.message.startswith("reading the request failed")
    broken = ServingCore(sequences(), Model(lambda inputs: 1 / 0))
    (failed,) = broken.answer([Request(tensors={"ids": ids})])
    assert failed.status == 500 and "inference failed: ZeroDivisionError" in failed.message
    sums_now = core.metrics.sums
    counted = {(m.name, labels): v for (m, labels), v in sums_now.counters.items()}
    assert counted[("torchship_requests_total", ("tensors", "direct"))] == 3
    assert counted[("torchship_batch_rows_total", ())] == 2  # the one answered request's rows
    assert counted[("torchship_rejected_total", ("range",))] == 1


def test_a_float_tensor_alone_with_nan_or_infinity_is_refused_by_name():
    core = ServingCore(CLASSIFIER, Model())
    for bad in (np.nan, np.inf, -np.inf):
        (answer,) = core.answer(
            [Request(tensors={"features": np.array([[1, bad, 0]], np.float32)})]
        )
        assert answer.status == 400 and "features: NaN or infinite" in answer.message
