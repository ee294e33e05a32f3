"""The TorchServe handler, driven in-process with a fake context on the real archives."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from handlers.metrics import BOUNDS, CLIENT_HEADER
from handlers.plan import ServingPlan
from handlers.adapters.torchserve_handler import SpecHandler
from scripts.pipeline.verify import compare
from tests.conftest import LAYOUT, REPO, TENSOR_EXAMPLES
from tests.fakes import FakeTorchServeContext, unpacked_archive

# These tests serve the example models' built artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    loaded = {}
    for name in SPEC:
        model_dir = unpacked_archive(name, tmp_path_factory.mktemp(name))
        handler = SpecHandler()
        handler.initialize(FakeTorchServeContext(model_dir, []))
        loaded[name] = handler
    return loaded


def call(handler, *requests):
    """requests: (body, content_type) pairs -> (decoded answers, statuses by index)."""
    context = FakeTorchServeContext(None, [ct for _, ct in requests])
    answers = handler.handle([{"body": body} for body, _ in requests], context)
    assert len(answers) == len(requests)
    assert all(t == "application/json" for t in context.response_types.values())
    return [json.loads(a) for a in answers], [
        context.statuses.get(i, 200) for i in range(len(requests))
    ]


def test_requests_are_counted_by_the_gateways_client(tmp_path):
    """The gateway names its client in a header; a name no spec could give is counted as
    "other", a request without the header as "direct"."""
    context = FakeTorchServeContext(unpacked_archive("digits_cnn", tmp_path), [])
    handler = SpecHandler()
    handler.initialize(context)
    png = digit_pngs()[0].read_bytes()
    calling = FakeTorchServeContext(None, ["image/png"] * 4)
    calling.headers = {
        0: {CLIENT_HEADER: "digits_app"},
        1: {CLIENT_HEADER: "digits_app"},
        2: {CLIENT_HEADER: "no such name!" * 10},
    }
    handler.handle([{"body": png}] * 4, calling)
    handler.engine.core.metrics.flush()
    requests = ("torchship_requests_total", "digits_cnn", "1", "encoded")
    assert context.metrics.total(*requests, "digits_app") == 2
    assert context.metrics.total(*requests, "other") == 1
    assert context.metrics.total(*requests, "direct") == 1


def request_file(model: str, name: str) -> bytes:
    return (REPO / "checkpoints" / model / "requests" / name).read_bytes()


def digit_pngs():
    return sorted((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png"))


def test_png_bytes_give_the_right_digit(handlers):
    for png in digit_pngs():
        (answer,), (status,) = call(handlers["digits_cnn"], (png.read_bytes(), "image/png"))
        assert status == 200 and answer["label"] == png.stem.split("_")[1]
        assert len(answer["top_k"]) == 3 and len(answer["outputs"]["logits"]) == 10


def test_raw_28x28_array_and_jpeg(handlers):
    png = digit_pngs()[0]
    image = Image.open(png)
    pixels = (np.asarray(image.resize((28, 28), Image.BILINEAR), np.float32) / 255 - 0.5) / 0.5
    jpeg = io.BytesIO()
    image.convert("RGB").resize((64, 64)).save(jpeg, format="JPEG", quality=95)
    answers, statuses = call(
        handlers["digits_cnn"],
        ({"inputs": pixels.tolist()}, "application/json"),
        (jpeg.getvalue(), "image/jpeg"),
    )
    assert statuses == [200, 200]
    assert answers[0]["label"] == answers[1]["label"] == png.stem.split("_")[1]


def test_one_bad_request_does_not_spoil_the_batch(handlers):
    png = digit_pngs()[0].read_bytes()
    answers, statuses = call(
        handlers["digits_cnn"],
        (png, "image/png"),
        (b"junk", "image/png"),
        (png[: len(png) // 2], "image/png"),
        (b"", "image/png"),
        (png, None),
    )
    assert statuses == [200, 400, 400, 400, 200]
    assert answers[0]["label"] == answers[4]["label"]
    assert "not a recognized image format" in answers[1]["message"]
    assert answers[3]["message"].startswith("empty body")
    assert all(a["code"] == 400 and a["type"] == "InvalidInput" for a in answers[1:4])


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        ({"inputs": [1.0] * 29}, "application/json", "expected shape [30] per example"),
        (
            {"inputs": [[1.0] * 30, [1.0] * 3]},
            "application/json",
            "list of numbers of equal lengths",
        ),
        ({"inputs": ["a"] * 30}, "application/json", "list of numbers"),
        ({"inputs": [float("nan")] * 30}, "application/json", "NaN or infinite"),
        ({"inputs": [1.0] * 30, "extra": 1}, "application/json", "unknown key(s) ['extra']"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\x00\x01", "image/png", "unsupported Content-Type 'image/png'"),
        (
            {"tensors": {"wrong": [1.0]}},
            "application/json",
            "must map every input name ['features']",
        ),
    ],
)
def test_tabular_bad_requests_are_400_with_a_reason(handlers, body, content_type, message):
    if isinstance(body, dict):
        body = json.dumps(body, allow_nan=True).encode()
    (answer,), (status,) = call(handlers["tabular_mlp"], (body, content_type))
    assert status == 400 and message in answer["message"], answer


def test_text_as_plain_text_bytes_and_json_list(handlers):
    answers, statuses = call(
        handlers["sentiment_lstm"],
        ("the movie was truly wonderful", "text/plain"),
        (b"the plot was awful", "text/plain"),
        (
            {"inputs": ["a lovely show, I enjoyed every minute", "the book was dull and boring"]},
            "application/json",
        ),
        (b"\xff\xfe bad utf8", "text/plain"),
        ("   ", "text/plain"),
    )
    assert statuses == [200, 200, 200, 400, 400]
    assert answers[0]["label"] == "positive" and answers[1]["label"] == "negative"
    assert [a["label"] for a in answers[2]] == ["positive", "negative"]
    assert "not valid UTF-8" in answers[3]["message"] and "empty text" in answers[4]["message"]


def test_sample_row_is_classified(handlers):
    (answer,), (status,) = call(
        handlers["tabular_mlp"], (request_file("tabular_mlp", "row_0.json"), "application/json")
    )
    assert status == 200 and answer["label"] in ("malignant", "benign")


@pytest.mark.parametrize("name", list(SPEC))
def test_golden_tensors_reproduce_eager_outputs(handlers, name):
    spec = SPEC[name]
    golden = np.load(LAYOUT.artifacts / name / str(spec.version) / "golden.npz")
    tensors = {t.name: golden[f"input.{t.name}"].tolist() for t in spec.inputs}
    (answers,), (status,) = call(handlers[name], ({"tensors": tensors}, "application/json"))
    assert status == 200
    for t in spec.outputs:
        served = np.array([a["outputs"][t.name] for a in answers], dtype=np.float32)
        assert compare(served, golden[f"output.{t.name}"], spec.tolerance).passed


def test_token_ids_out_of_range_are_refused(handlers):
    (answer,), (status,) = call(
        handlers["sentiment_lstm"],
        ({"tensors": {"token_ids": [[10_000] * 32]}}, "application/json"),
    )
    assert status == 400 and "values must lie in [0, 9999]" in answer["message"]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "aoti"])
def test_handler_serves_every_format(tmp_path, fmt):
    """serving.format picks the loader: TorchScript, ONNX through onnxruntime, or the AOTInductor
    package."""
    from handlers.formats import FORMATS

    spec = SPEC["digits_cnn"]
    model_dir = unpacked_archive("digits_cnn", tmp_path)
    artifact = LAYOUT.artifacts / spec.name / str(spec.version) / FORMATS[fmt].file
    (model_dir / artifact.name).write_bytes(artifact.read_bytes())
    ServingPlan.load(model_dir).with_format(fmt).save(model_dir)
    handler = SpecHandler()
    handler.initialize(FakeTorchServeContext(model_dir, []))
    test_golden_tensors_reproduce_eager_outputs({"digits_cnn": handler}, "digits_cnn")


def test_form_uploads_use_the_field_content_type(handlers):
    """curl -F / perf_analyzer --service-kind torchserve send multipart forms: TorchServe hands the
    field as "data" with its own content type under headers["data"]."""
    png = digit_pngs()[0]

    class FormContext(FakeTorchServeContext):
        def get_all_request_header(self, idx):
            return {
                "Content-Type": "multipart/form-data; boundary=x",
                "data": {"content-type": self.content_types[idx]},
            }

    context = FormContext(None, ["image/png", ""])
    tensors = json.dumps({"tensors": {"image": np.zeros((1, 1, 28, 28)).tolist()}}).encode()
    answers = handlers["digits_cnn"].handle(
        [{"data": png.read_bytes()}, {"data": tensors}], context
    )
    assert context.statuses == {}
    assert json.loads(answers[0])["label"] == png.stem.split("_")[1]
    assert len(json.loads(answers[1])) == 1


def test_the_module_level_handle_initialises_then_answers(monkeypatch, tmp_path):
    """TorchServe's function entry point: handle(None, context) when the worker starts, then
    handle(batch, context) for every batch."""
    from handlers.adapters import torchserve_handler

    monkeypatch.setattr(torchserve_handler, "_service", SpecHandler())
    model_dir = unpacked_archive("tabular_mlp", tmp_path)
    assert torchserve_handler.handle(None, FakeTorchServeContext(model_dir, [])) is None
    context = FakeTorchServeContext(None, ["application/json", "application/json"])
    good, bad = torchserve_handler.handle(
        [{"body": request_file("tabular_mlp", "row_0.json")}, {"body": b"{}"}], context
    )
    assert json.loads(good)["label"] in ("malignant", "benign")
    assert context.statuses == {1: 400} and json.loads(bad)["code"] == 400


def test_every_request_is_counted_by_format_and_every_refusal_by_reason(tmp_path):
    """What the handler publishes through context.metrics (TorchServe's metrics cache): one
    batch of two good PNGs, junk bytes and a wrong-shaped JSON body."""
    context = FakeTorchServeContext(unpacked_archive("digits_cnn", tmp_path), [])
    handler = SpecHandler()
    handler.initialize(context)
    png = digit_pngs()[0].read_bytes()
    _, statuses = call(
        handler,
        (png, "image/png"),
        (png, "image/png"),
        (b"junk", "image/png"),
        ({"inputs": [[1.0, 2.0]]}, "application/json"),
    )
    assert statuses == [200, 200, 400, 400]
    handler.engine.core.metrics.flush()  # else published within a second, by its own thread
    metrics, model = context.metrics, ("digits_cnn", "1")
    assert metrics.total("torchship_model_loads_total", *model) == 1
    assert metrics.total("torchship_requests_total", *model, "encoded") == 3
    assert metrics.total("torchship_requests_total", *model, "json") == 1
    assert metrics.total("torchship_rejected_total", *model, "decode") == 1
    assert metrics.total("torchship_rejected_total", *model, "shape") == 1
    assert metrics.total("torchship_failed_total") == 0
    assert metrics.total("torchship_batches_total", *model) == 1  # one model call for both PNGs
    assert metrics.total("torchship_batch_rows_total", *model) == 2
    stages = {
        stage: metrics.total("torchship_stage_seconds_count", *model, stage)
        for stage in ("preprocess", "model", "postprocess")
    }
    assert stages == {"preprocess": 4, "model": 1, "postprocess": 2}
    # cumulative buckets, as Prometheus' histograms have them
    buckets = [
        metrics.total("torchship_stage_seconds_bucket", *model, "model", le) for le in BOUNDS
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 1
