"""Real TorchServe on free loopback ports, serving the project's own archives."""

from __future__ import annotations

import concurrent.futures
import json
import re
import zipfile

import grpc
import numpy as np
import pytest
import requests

from handlers.plan import ServingPlan
from scripts.pipeline.verify import compare
from scripts.runtimes.processes import ModelsFailed, free_port
from scripts.runtimes.torchserve import server as torchserve_server
from scripts.runtimes.torchserve.client import TorchServeClient, TorchServeError
from scripts.runtimes.torchserve.grpc_client import TorchServeGrpcClient
from tests.conftest import EXAMPLES, LAYOUT, REPO, TENSOR_EXAMPLES

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py


@pytest.fixture(scope="module")
def server(torchserve):
    return torchserve


@pytest.fixture(scope="module")
def client(server):
    return TorchServeClient.for_server(server)


def request_file(model: str, pattern: str):
    return sorted((REPO / "checkpoints" / model / "requests").glob(pattern))


@pytest.mark.parametrize("name", list(SPEC))
def test_golden_samples_over_rest_equal_eager_outputs(client, name):
    spec = SPEC[name]
    golden = np.load(LAYOUT.artifacts / name / str(spec.version) / "golden.npz")
    tensors = {t.name: golden[f"input.{t.name}"].tolist() for t in spec.inputs}
    answers = client.predict(name, {"tensors": tensors})
    for t in spec.outputs:
        served = np.array([a["outputs"][t.name] for a in answers], dtype=np.float32)
        result = compare(served, golden[f"output.{t.name}"], spec.tolerance)
        assert result.passed, (name, t.name, result)


def test_readme_examples_return_the_right_labels(client):
    for png in request_file("digits_cnn", "digit_*.png"):
        assert (
            client.predict("digits_cnn", png.read_bytes(), "image/png")["label"]
            == png.stem.split("_")[1]
        )
    assert (
        client.predict("sentiment_lstm", "the acting was truly wonderful", "text/plain")["label"]
        == "positive"
    )
    assert (
        client.predict("sentiment_lstm", "honestly the plot was not good", "text/plain")["label"]
        == "negative"
    )
    row = json.loads(request_file("tabular_mlp", "row_0.json")[0].read_text())
    assert client.predict("tabular_mlp", row)["label"] in ("malignant", "benign")


def test_concurrent_requests_are_batched_server_side(client, server):
    png = request_file("digits_cnn", "digit_*.png")[0]
    expected = png.stem.split("_")[1]

    def batch_sizes() -> list[int]:
        log = (server.workdir / "logs" / "model_log.log").read_text()
        return [int(n) for n in re.findall(r"W-\d+-digits_cnn\S* .*batch of (\d+) request", log)]

    for _ in range(
        5
    ):  # each round has 16 requests in flight; batching shows in the first in practice
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            labels = list(
                pool.map(
                    lambda _: client.predict("digits_cnn", png.read_bytes(), "image/png")["label"],
                    range(96),
                )
            )
        assert labels == [expected] * 96
        if max(batch_sizes(), default=0) > 1:
            break
    assert max(batch_sizes(), default=0) > 1, "TorchServe never batched concurrent requests"


def test_calls_without_or_with_a_wrong_token_are_refused(server):
    # TorchServe 0.12 answers a failed token check with 400 InvalidKeyException (not 401).
    for url in (
        f"{server.inference_url}/predictions/tabular_mlp",
        f"{server.management_url}/models",
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = requests.request(
                "POST" if "predictions" in url else "GET", url, headers=headers, timeout=10
            )
            assert reply.status_code in (400, 401), reply.text
            assert "Token Authorization failed" in reply.json()["message"]


def test_model_api_is_off_by_default(client):
    with pytest.raises(TorchServeError) as refused:
        client.register("file:///etc/passwd.mar")
    assert refused.value.status == 405


def test_bad_requests_leave_the_server_serving(client):
    pids = client.worker_pids("digits_cnn")
    for body, content_type in (
        (b"junk", "image/png"),
        (b"", "image/png"),
        (b"{", "application/json"),
        (json.dumps({"inputs": [[1, 2]]}), "application/json"),
    ):
        reply = client.predict_raw("digits_cnn", body, content_type)
        assert reply.status_code == 400 and reply.json()["message"]
    png = request_file("digits_cnn", "digit_*.png")[0]
    assert (
        client.predict("digits_cnn", png.read_bytes(), "image/png")["label"]
        == png.stem.split("_")[1]
    )
    assert client.worker_pids("digits_cnn") == pids


def test_management_api_list_describe_scale_and_default(client):
    assert {m["modelName"] for m in client.list_models()} == {m.name for m in EXAMPLES}
    described = client.describe("tabular_mlp")[0]
    assert (
        described["batchSize"]
        == SPEC["tabular_mlp"].for_runtime("torchserve").batching.max_batch_size
    )
    assert described["modelVersion"] == "1"
    client.scale("tabular_mlp", 2)
    assert len(client.worker_pids("tabular_mlp")) == 2
    client.scale("tabular_mlp", 1)
    assert len(client.worker_pids("tabular_mlp")) == 1
    assert "Default version" in client.set_default("tabular_mlp", "1")["status"]
    with pytest.raises(TorchServeError) as missing:
        client.describe("no_such_model")
    assert missing.value.status == 404


def test_a_model_that_cannot_load_fails_the_start_with_the_worker_log(tmp_path):
    """wait_ready names the model with the worker's own error as soon as the load fails,
    instead of hanging until the timeout or saying 'worker died'."""
    store = tmp_path / "store"
    store.mkdir()
    with (
        zipfile.ZipFile(LAYOUT.model_store / "tabular_mlp.mar") as good,
        zipfile.ZipFile(store / "tabular_mlp.mar", "w") as broken,
    ):
        artifact = ServingPlan.model_validate_json(good.read("serving_plan.json")).artifact
        for item in good.infolist():
            if item.filename != artifact:  # the model file is missing
                broken.writestr(item, good.read(item))
    ports = torchserve_server.Ports(*(free_port() for _ in range(5)))
    instance = torchserve_server.start(
        LAYOUT.torchserve_config, store, ["tabular_mlp"], ports, tmp_path / "ts"
    )
    try:
        with pytest.raises(ModelsFailed) as failed:
            torchserve_server.wait_ready(instance, ["tabular_mlp"], timeout_s=120)
    finally:
        torchserve_server.stop(instance.workdir)
    assert list(failed.value.failed) == ["tabular_mlp"] and failed.value.waited_s < 120
    assert "model tabular_mlp failed to load" in str(failed.value) and artifact in str(failed.value)


def test_grpc_predictions_with_stubs_compiled_from_the_server_jar(server):
    grpc_client = TorchServeGrpcClient.for_server(server)
    assert {m["modelName"] for m in grpc_client.list_models()} == {m.name for m in EXAMPLES}
    png = request_file("digits_cnn", "digit_*.png")[0]
    assert (
        json.loads(grpc_client.predict_raw("digits_cnn", png.read_bytes()))["label"]
        == png.stem.split("_")[1]
    )
    assert (
        grpc_client.predict("sentiment_lstm", {"inputs": "the film was superb"})["label"]
        == "positive"
    )
    with pytest.raises(TorchServeError) as refused:
        grpc_client.predict("digits_cnn", {"inputs": [[1, 2]]})
    assert refused.value.status == 400 and "expected shape" in refused.value.message


def test_grpc_without_the_token_is_refused(server, tmp_path):
    wrong = tmp_path / "key_file.json"
    wrong.write_text(json.dumps({"inference": {"key": "wrong"}, "management": {"key": "wrong"}}))
    intruder = TorchServeGrpcClient(
        server.ports.grpc_inference, server.ports.grpc_management, wrong
    )
    for call in (lambda: intruder.predict_raw("digits_cnn", b"x"), intruder.list_models):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
