"""5,000 mixed valid requests from 32 concurrent clients across both servers and every
endpoint: no errors, and every answer equal to its golden output. Figures go to
reports/concurrency.json (no timing is asserted)."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import threading
import time

import numpy as np

from scripts.pipeline.verify import compare
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.torchserve.grpc_client import TorchServeGrpcClient
from scripts.runtimes.triton.client import TritonClient, decode_labels, spec_datatypes
from tests.conftest import LAYOUT, REPO, TENSOR_EXAMPLES

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py
REQUESTS, CLIENTS = 5000, 32
ENDPOINTS = ("torchserve-rest", "torchserve-grpc", "triton-http", "triton-grpc", "triton-ensemble")


def golden(name: str):
    spec = SPEC[name]
    g = np.load(LAYOUT.artifacts / name / str(spec.version) / "golden.npz")
    return {t.name: g[f"input.{t.name}"] for t in spec.inputs}, {
        t.name: g[f"output.{t.name}"] for t in spec.outputs
    }


def test_5000_mixed_requests_from_32_clients(torchserve, triton):
    goldens = {name: golden(name) for name in SPEC}
    texts = {p.read_bytes() for p in (REPO / "checkpoints/sentiment_lstm/requests").glob("*.txt")}
    rest = TorchServeClient.for_server(torchserve)
    expected_labels = {t: rest.predict("sentiment_lstm", t, "text/plain")["label"] for t in texts}
    local = threading.local()

    def clients():
        if not hasattr(
            local, "clients"
        ):  # one set per thread: the HTTP clients are not thread-safe
            local.clients = {
                "torchserve-rest": TorchServeClient.for_server(torchserve),
                "torchserve-grpc": TorchServeGrpcClient.for_server(torchserve),
                "triton-http": TritonClient(triton.http_url, "http"),
                "triton-grpc": TritonClient(triton.grpc_url, "grpc"),
            }
        return local.clients

    def one(i: int) -> tuple[str, str, float]:
        rng = np.random.default_rng(i)
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        name = sorted(SPEC)[rng.integers(len(SPEC))]
        spec, (inputs, outputs) = SPEC[name], goldens[name]
        row = int(rng.integers(len(next(iter(inputs.values())))))
        started = time.perf_counter()
        if endpoint == "triton-ensemble":
            text = sorted(texts)[row % len(texts)]
            label = decode_labels(
                clients()["triton-http"].infer("sentiment_lstm_ensemble", {"TEXT": [text]})["label"]
            )[0]
            assert label == expected_labels[text]
            return endpoint, "sentiment_lstm_ensemble", time.perf_counter() - started
        one_row = {k: v[row : row + 1] for k, v in inputs.items()}
        if endpoint.startswith("torchserve"):
            answer = clients()[endpoint].predict(
                name, {"tensors": {k: v.tolist() for k, v in one_row.items()}}
            )
            served = {t.name: np.array([answer[0]["outputs"][t.name]]) for t in spec.outputs}
        else:
            served = clients()[endpoint].infer(name, one_row, spec_datatypes(spec))
        for t in spec.outputs:
            result = compare(
                np.asarray(served[t.name], dtype=outputs[t.name].dtype),
                outputs[t.name][row : row + 1],
                spec.tolerance,
            )
            assert result.passed, (endpoint, name, row, result)
        return endpoint, name, time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, range(REQUESTS)))  # re-raises the first failed request
    elapsed = time.perf_counter() - started
    assert len(results) == REQUESTS
    per_endpoint = collections.defaultdict(list)
    for endpoint, _, latency in results:
        per_endpoint[endpoint].append(latency)
    figures = {
        "requests": REQUESTS,
        "clients": CLIENTS,
        "errors": 0,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(REQUESTS / elapsed, 1),
        "per_endpoint": {
            e: {
                "requests": len(v),
                "p50_ms": round(1000 * float(np.percentile(v, 50)), 1),
                "p99_ms": round(1000 * float(np.percentile(v, 99)), 1),
            }
            for e, v in sorted(per_endpoint.items())
        },
    }
    (LAYOUT.reports).mkdir(exist_ok=True)
    (LAYOUT.reports / "concurrency.json").write_text(json.dumps(figures, indent=1) + "\n")
