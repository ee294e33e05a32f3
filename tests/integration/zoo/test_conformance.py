"""The conformance zoo on both runtimes: every entry's golden samples through every endpoint
(TorchServe REST and gRPC, Triton HTTP and gRPC) equal eager PyTorch, encoded requests
(image bytes) give eager's label, and sequences of different lengths get their own answers
under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from handlers.runners import torch_runner
from scripts.pipeline.loading import load_reference
from scripts.measure.verify_served import check_golden, check_requests
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.torchserve.endpoints import output_array
from scripts.runtimes.triton.client import TritonClient, spec_datatypes
from scripts.spec import load_spec
from tests.conftest import LAYOUT, ZOO_SPEC

ZOO = {m.name: m for m in load_spec(ZOO_SPEC).models if m.task.generation is None}  # tensors
ENDPOINTS = {"torchserve-rest", "torchserve-grpc", "triton-http", "triton-grpc"}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ZOO))
def test_golden_samples_equal_eager_on_every_endpoint(name, zoo_endpoints):
    spec = ZOO[name]
    checks = check_golden(spec, LAYOUT, zoo_endpoints) + check_requests(spec, LAYOUT, zoo_endpoints)
    assert ENDPOINTS <= {c.endpoint for c in checks}
    failed = [f"{c.endpoint}: {c.detail}" for c in checks if not c.passed]
    assert not failed, failed


@pytest.mark.integration
def test_image_models_answer_encoded_images_on_both_runtimes(zoo_endpoints):
    for name in ("zoo_resnet18", "zoo_mobilenet_v3_small"):
        checks = check_requests(ZOO[name], LAYOUT, zoo_endpoints)
        assert {c.endpoint for c in checks} >= {
            "torchserve-rest (requests)",
            "triton-ensemble-http",
        }, checks
        assert all(c.passed and c.samples == 2 for c in checks), checks


@pytest.mark.integration
def test_sequences_of_different_lengths_under_concurrency(zoo_servers):
    """48 requests of lengths 1-12 from 16 clients on each runtime: each answer is eager's for
    its own sequence (requests batch only with others of the same length)."""
    spec = ZOO["zoo_sequence_gru"]
    eager = torch_runner(load_reference(spec, LAYOUT), spec.tensor_names, spec.output_names)
    rng = np.random.default_rng(7)
    sequences = [
        rng.standard_normal((1, length, 4)).astype(np.float32) for length in list(range(1, 13)) * 4
    ]
    expected = [eager({"steps": s})[0] for s in sequences]
    local = threading.local()

    def torchserve(steps):
        local.ts = getattr(local, "ts", None) or TorchServeClient.for_server(
            zoo_servers["torchserve"]
        )
        return np.array(
            local.ts.predict(spec.name, {"tensors": {"steps": steps.tolist()}})[0]["outputs"][
                "scores"
            ]
        )

    def triton(steps):
        local.tr = getattr(local, "tr", None) or TritonClient(
            zoo_servers["triton"].http_url, "http"
        )
        return local.tr.infer(spec.name, {"steps": steps}, spec_datatypes(spec))["scores"][0]

    for call in (torchserve, triton):
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, sequences))
        for steps, got, want in zip(sequences, answers, expected):
            np.testing.assert_allclose(
                got, want[0], atol=1e-4, err_msg=f"{call.__name__}, length {steps.shape[1]}"
            )


@pytest.mark.integration
def test_texts_of_different_lengths_are_padded_into_one_batch_with_the_mask(zoo_servers):
    """BERT-style model from raw text: 32 texts of 1-40 words from 16 clients per runtime; each
    label and score equal eager PyTorch on that text alone (padding is masked out)."""
    from handlers.preprocessing.pipeline import Pipeline
    from handlers.preprocessing.processing import class_scores
    from scripts.pipeline.plan import serving_plan

    spec = ZOO["zoo_tiny_bert"]
    pipeline = Pipeline(serving_plan(spec, LAYOUT))
    eager = torch_runner(load_reference(spec, LAYOUT), spec.tensor_names, spec.output_names)
    words = (
        "the food was great but the service was slow and the room was far too noisy for us".split()
    )
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i // len(words))) for i in range(32)]
    expected = [
        class_scores(eager(pipeline.parse(t, "text/plain")[0])[0], "logits")[0] for t in texts
    ]
    local = threading.local()

    def torchserve(text):
        local.ts = getattr(local, "ts", None) or TorchServeClient.for_server(
            zoo_servers["torchserve"]
        )
        answer = local.ts.predict(spec.name, text.encode(), content_type="text/plain")
        return answer["label"], answer["score"]

    def triton(text):
        local.tr = getattr(local, "tr", None) or TritonClient(
            zoo_servers["triton"].http_url, "http"
        )
        out = local.tr.infer(f"{spec.name}_ensemble", {"TEXT": [text.encode()]})
        return out["label"].reshape(-1)[0].decode(), float(out["score"].reshape(-1)[0])

    labels = pipeline.plan.task.labels
    for call in (torchserve, triton):
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, texts))
        for text, (label, score), scores in zip(texts, answers, expected):
            assert label == labels[int(scores.argmax())], (call.__name__, text)
            assert abs(score - float(scores.max())) < 1e-4, (call.__name__, text, score, scores)


@pytest.mark.integration
def test_detections_of_different_images_under_concurrency(zoo_servers):
    """A model without a batch axis: 12 images from 4 clients per runtime, each one model call
    ([3, 320, 320], never stacked); each answer has eager's number of boxes for its own image
    (from 0 up, depending on the image) and eager's boxes, scores and labels."""
    spec = ZOO["zoo_ssdlite"]
    eager = torch_runner(load_reference(spec, LAYOUT), spec.tensor_names, spec.output_names)
    rng = np.random.default_rng(11)
    images = [rng.uniform(0, 1, (3, 320, 320)).astype(np.float32) for _ in range(11)]
    images.append(np.full((3, 320, 320), 0.5, np.float32))  # a flat grey image: no detection
    expected = [dict(zip(spec.output_names, eager({"image": image}))) for image in images]
    assert len({len(e["scores"]) for e in expected}) > 3  # N varies with the image
    local = threading.local()

    def torchserve(image):
        local.ts = getattr(local, "ts", None) or TorchServeClient.for_server(
            zoo_servers["torchserve"]
        )
        answer = local.ts.predict(spec.name, {"tensors": {"image": image.tolist()}})
        return {t.name: output_array(t, answer["outputs"][t.name]) for t in spec.outputs}

    def triton(image):
        local.tr = getattr(local, "tr", None) or TritonClient(
            zoo_servers["triton"].grpc_url, "grpc"
        )
        return local.tr.infer(spec.name, {"image": image}, spec_datatypes(spec))

    for call in (torchserve, triton):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(call, images))
        for i, (got, want) in enumerate(zip(answers, expected)):
            assert got["boxes"].shape == want["boxes"].shape, (call.__name__, i)
            assert_same_detections(got, want, f"{call.__name__}, image {i}")


def assert_same_detections(got: dict, want: dict, where: str) -> None:
    """Each served detection matches one of eager's (same label, box and score within 1e-3):
    two of nearly equal score may come in either order from ONNX Runtime."""
    unused = set(range(len(want["labels"])))
    for box, score, label in zip(got["boxes"], got["scores"], got["labels"]):
        match = next(
            (
                j
                for j in sorted(unused)
                if want["labels"][j] == label
                and np.abs(want["boxes"][j] - box).max() <= 1e-3
                and abs(want["scores"][j] - score) <= 1e-3
            ),
            None,
        )
        assert match is not None, (where, box, score, label)
        unused.remove(match)
