"""Task kind embedding end to end: zoo_text_embedder built through the one build path and served
on both runtimes passes what `make verify` checks of its kind on every endpoint (golden samples
element-wise and by cosine similarity, example sentences through TorchServe and Triton's
ensemble), and the `openai` client gets eager PyTorch's vectors from TorchServe's
/predictions/<model>/<version>/v1/embeddings. Triton has no such route: its HTTP frontend
serves KServe v2 and generate only."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from handlers.preprocessing.processing import l2_normalized
from scripts.measure.verification import verify_models
from scripts.measure.verify_served import eager_answers, endpoints_for, example_requests
from scripts.runtimes.protocols import StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.tasks.embedding import cosine_similarities
from tests.conftest import LAYOUT, ZOO_SPEC, build_spec

pytestmark = pytest.mark.integration
NAME = "zoo_text_embedder"


@pytest.fixture(scope="module")
def embedder():
    return build_spec(ZOO_SPEC, [NAME])[0]


@pytest.fixture(scope="module")
def servers(embedder, tmp_path_factory):
    """{runtime name: server}, each serving only the embedder."""
    started = {}
    try:
        for name, runtime in RUNTIMES.items():
            started[name] = runtime.server.start(
                [embedder],
                LAYOUT,
                StartOptions(
                    workdir=tmp_path_factory.mktemp(f"embedder_{name}"),
                    free_ports=True,
                    timeout_s=240,
                ),
            )
        yield started
    finally:
        for name, server in started.items():
            RUNTIMES[name].server.stop(server.workdir)


def test_make_verify_s_checks_pass_on_every_endpoint_of_both_runtimes(embedder, servers):
    checks = verify_models([embedder], LAYOUT, endpoints_for(servers))
    endpoints = {"torchserve-rest", "torchserve-grpc", "triton-http", "triton-grpc"}
    requests = {"torchserve-rest (requests)", "triton-ensemble-http", "triton-ensemble-grpc"}
    names = {c.endpoint for c in checks}
    assert endpoints | requests <= names
    assert {f"{e} (cosine vs eager)" for e in endpoints | requests} <= names
    assert [f"{c.endpoint}: {c.detail}" for c in checks if not c.passed] == []


def test_the_openai_client_gets_eager_s_vectors_from_torchserve(embedder, servers):
    server = servers["torchserve"]
    client = openai.OpenAI(
        base_url=f"{server.inference_url}/predictions/{NAME}/{embedder.version}/v1",
        api_key=TorchServeClient.for_server(server).token("inference"),
        max_retries=0,
    )
    requests = example_requests(embedder, LAYOUT)
    texts = [path.read_text(encoding="utf-8") for path in requests]
    answer = client.embeddings.create(input=texts, model=NAME, encoding_format="float")
    served = np.array([item.embedding for item in answer.data])
    # eager on each sentence alone; served, the three were padded into one batch
    eager = eager_answers(embedder, LAYOUT, requests, int8=False)
    want = l2_normalized(np.stack([a["sentence_embedding"] for a in eager]))
    assert [item.index for item in answer.data] == [0, 1, 2] and answer.model == NAME
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(texts)
    np.testing.assert_allclose(served, want, atol=1e-5)
    assert cosine_similarities(served, want).min() > 0.99999
    # unchanged, the client asks for base64 (little-endian float32) and decodes it
    default = client.embeddings.create(input=texts, model=NAME)
    decoded = np.array([d.embedding for d in default.data], dtype=np.float32)
    np.testing.assert_array_equal(decoded, served.astype(np.float32))
