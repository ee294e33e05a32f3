"""Real tritonserver (nvidia-pytriton wheel) on free loopback ports, serving the generated
repository."""

from __future__ import annotations

import concurrent.futures
import json
import shutil

import numpy as np
import pytest
import requests
from tritonclient.utils import InferenceServerException

from handlers.formats import FORMATS
from handlers.adapters.torchserve_handler import SpecHandler
from scripts.pipeline.paths import golden as golden_inputs
from scripts.pipeline.plan import serving_plan
from scripts.pipeline.verify import compare
from scripts.measure import perf
from scripts.runtimes.triton import server as triton_server
from scripts.runtimes.triton.client import TritonClient, batch_sizes, decode_labels, spec_datatypes
from scripts.spec import BuildError
from tests.conftest import LAYOUT, REPO, TENSOR_EXAMPLES
from tests.fakes import FakeTorchServeContext

pytestmark = pytest.mark.integration
SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py
PROTOCOLS = ["http", "grpc"]


def client_for(server, protocol: str) -> TritonClient:
    url = server.http_url if protocol == "http" else server.grpc_url
    return TritonClient(url, protocol, admin_key=server.admin_key)


def golden(name):
    return np.load(LAYOUT.artifacts / name / "1" / "golden.npz")


def test_every_model_and_ensemble_is_ready_and_admin_api_needs_the_key(triton, triton_repo_dir):
    client = client_for(triton, "http")
    assert all(client.is_ready(m) for m in triton_server.repository_models(triton_repo_dir))
    index = f"http://{triton.http_url}/v2/repository/index"
    assert requests.post(index, timeout=10).status_code == 403
    reply = requests.post(index, headers={triton_server.ADMIN_HEADER: triton.admin_key}, timeout=10)
    assert reply.status_code == 200 and {m["state"] for m in reply.json()} == {"READY"}
    assert (triton.workdir / "admin_key").stat().st_mode & 0o077 == 0


# One call per restricted API group (triton_server.RESTRICTED_APIS), over HTTP...
ADMIN_HTTP = {
    "model-repository": ("POST", "/v2/repository/index"),
    "shared-memory": ("GET", "/v2/systemsharedmemory/status"),
    "logging": ("GET", "/v2/logging"),
    "trace": ("GET", "/v2/trace/setting"),
    "statistics": ("GET", "/v2/models/stats"),
}
# ... and over gRPC (tritonclient's methods)
ADMIN_GRPC = {
    "model-repository": "get_model_repository_index",
    "shared-memory": "get_system_shared_memory_status",
    "logging": "get_log_settings",
    "trace": "get_trace_settings",
    "statistics": "get_inference_statistics",
}


def test_every_admin_api_needs_the_key_over_http_and_grpc(triton):
    """Loading models, shared memory, logging, trace and statistics: refused without the admin
    key, answered with it; inference, health and metadata stay open."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    assert set(ADMIN_HTTP) == set(ADMIN_GRPC) == set(triton_server.RESTRICTED_APIS)
    key = {triton_server.ADMIN_HEADER: triton.admin_key}
    for api, (method, path) in ADMIN_HTTP.items():
        url = f"http://{triton.http_url}{path}"
        assert requests.request(method, url, timeout=10).status_code == 403, api
        assert requests.request(method, url, headers=key, timeout=10).status_code == 200, api
    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    grpc_key = {triton_server.GRPC_ADMIN_HEADER: triton.admin_key}
    try:
        for api, call in ADMIN_GRPC.items():
            with pytest.raises(InferenceServerException) as refused:
                getattr(grpc, call)()
            assert "restricted" in refused.value.message(), (api, refused.value.message())
            getattr(grpc, call)(headers=grpc_key)  # answered
        assert grpc.is_server_ready() and grpc.get_model_metadata("digits_cnn")
    finally:
        grpc.close()
    open_calls = ("/v2/health/ready", "/v2/models/digits_cnn", "/v2/models/digits_cnn/config")
    for path in open_calls:
        assert requests.get(f"http://{triton.http_url}{path}", timeout=10).status_code == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(SPEC))
def test_golden_samples_equal_eager_outputs(triton, protocol, name):
    spec, g = SPEC[name], golden(name)
    outputs = client_for(triton, protocol).infer(
        name, {t.name: g[f"input.{t.name}"] for t in spec.inputs}, spec_datatypes(spec)
    )
    for t in spec.outputs:
        result = compare(outputs[t.name], g[f"output.{t.name}"], spec.tolerance)
        assert result.passed, (name, protocol, t.name, result)


def torchserve_handler(name, tmp_path):
    """The TorchServe handler on the model dir TorchServe would unpack (serving plan + the
    spec's serving format), driven in-process."""
    spec = SPEC[name]
    shutil.copy2(LAYOUT.artifacts / name / "1" / FORMATS[spec.serving.format].file, tmp_path)
    serving_plan(spec, LAYOUT).save(tmp_path)
    handler = SpecHandler()
    handler.initialize(FakeTorchServeContext(tmp_path, []))
    return handler


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "name,pattern,input_name,content_type",
    [
        ("digits_cnn", "digit_*.png", "IMAGE", "image/png"),
        ("sentiment_lstm", "review_*.txt", "TEXT", "text/plain"),
    ],
)
def test_ensembles_answer_like_the_torchserve_handler(
    triton, tmp_path, protocol, name, pattern, input_name, content_type
):
    payloads = [
        p.read_bytes() for p in sorted((REPO / "checkpoints" / name / "requests").glob(pattern))
    ]
    handler = torchserve_handler(name, tmp_path)
    context = FakeTorchServeContext(None, [content_type] * len(payloads))
    expected = [json.loads(a) for a in handler.handle([{"body": p} for p in payloads], context)]
    outputs = client_for(triton, protocol).infer(f"{name}_ensemble", {input_name: payloads})
    assert decode_labels(outputs["label"]) == [e["label"] for e in expected]
    assert np.allclose(outputs["score"][:, 0], [e["score"] for e in expected], atol=1e-4)
    if name == "digits_cnn":  # the request files are named after their digit
        assert decode_labels(outputs["label"]) == [
            p.stem.split("_")[1]
            for p in sorted((REPO / "checkpoints/digits_cnn/requests").glob(pattern))
        ]


def test_concurrent_requests_are_batched(triton):
    """Many requests in flight at once: the dynamic batcher runs some of them together."""
    client = client_for(triton, "grpc")
    image = golden("digits_cnn")["input.image"][:1]
    for _ in range(5):  # each round sends 32 at once; batching shows up in the first in practice
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda _: client_for(triton, "grpc").infer("digits_cnn", {"image": image}),
                    range(32),
                )
            )
        if max(batch_sizes(client.statistics("digits_cnn"))) > 1:
            break
    assert max(batch_sizes(client.statistics("digits_cnn"))) > 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bad_request_gets_a_clear_error_while_others_keep_working(triton, protocol):
    tokens = golden("sentiment_lstm")["input.token_ids"]
    bad = tokens[:1].copy()
    bad[0, 0] = 123456

    def send(payload):
        try:
            return client_for(triton, protocol).infer("sentiment_lstm", {"token_ids": payload})
        except InferenceServerException as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, [tokens[:2]] * 4 + [bad] + [tokens[:2]] * 4))
    errors = [r for r in results if isinstance(r, InferenceServerException)]
    assert len(errors) == 1 and "token_ids: values must lie in [0, 9999]" in errors[0].message()
    assert str(errors[0].status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert all(
        r["logits"].shape == (2, 2) for r in results if not isinstance(r, InferenceServerException)
    )
    with pytest.raises(InferenceServerException, match="cannot decode image"):
        client_for(triton, protocol).infer("digits_cnn_ensemble", {"IMAGE": [b"not an image"]})
    assert client_for(triton, protocol).is_ready("sentiment_lstm")


def test_perf_analyzer_runs_against_digits_cnn(triton, tmp_path):
    rows = golden_inputs(SPEC["digits_cnn"], LAYOUT)
    # it runs and reports, whatever else shares the 2 cores: windows of a request count (a time
    # window on a starved machine can hold none) and any spread counted as stable
    lenient = {"stability": 1000, "max_trials": 10, "requests": 20}
    (result,) = perf.run(
        "digits_cnn",
        triton.http_url,
        "http",
        [2],
        rows,
        tmp_path,
        admin_key=triton.admin_key,
        measurement=lenient,
    )
    assert result["concurrency"] == 2 and result["throughput"] > 0 and result["p99_ms"] > 0
    # perf_analyzer reads the statistics API and sends no key over gRPC: a clear refusal
    with pytest.raises(BuildError, match="statistics API, which `make serve` keeps behind"):
        perf.run("digits_cnn", triton.grpc_url, "grpc", [2], rows, tmp_path)


def test_grpc_repository_api_needs_the_key_too(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    with pytest.raises(InferenceServerException):
        client.get_model_repository_index()
    with pytest.raises(InferenceServerException):
        client.get_model_repository_index(headers={triton_server.GRPC_ADMIN_HEADER: "wrong"})
    index = client.get_model_repository_index(
        headers={triton_server.GRPC_ADMIN_HEADER: triton.admin_key}
    )
    assert {m.name for m in index.models} >= set(SPEC)
