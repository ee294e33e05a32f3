"""`make verify`'s checks against real servers: every endpoint equals eager PyTorch, and a
served model that drifts is caught."""

from __future__ import annotations

import numpy as np

from scripts.measure.verification import verify_models
from scripts.measure.verify_served import Check, check_golden, endpoints_for, write_report
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

SPEC = load_spec(REPO / "models.yaml")


def test_every_endpoint_equals_the_trained_model(torchserve, triton, tmp_path):
    checks = verify_models(
        SPEC.models, LAYOUT, endpoints_for({"torchserve": torchserve, "triton": triton})
    )
    failed = [c for c in checks if not c.passed]
    assert not failed, failed
    endpoints = {(c.model, c.endpoint) for c in checks}
    for model in ("tabular_mlp", "digits_cnn", "sentiment_lstm"):
        for endpoint in (
            "torchserve-rest",
            "torchserve-grpc",
            "triton-http",
            "triton-grpc",
            "torchserve vs triton",
            "torchserve-rest (requests)",
        ):
            assert (model, endpoint) in endpoints
    for model in ("digits_cnn", "sentiment_lstm"):
        assert (model, "triton-ensemble-http") in endpoints and (
            model,
            "triton-ensemble-grpc",
        ) in endpoints
    report = write_report(checks, tmp_path / "verify.json")
    assert report["passed"] and len(report["checks"]) == len(checks)


def test_a_drifting_endpoint_fails_with_the_worst_element(
    torchserve, triton, tmp_path, monkeypatch
):
    spec = SPEC.select(["tabular_mlp"])[0]
    endpoints = endpoints_for({"torchserve": torchserve, "triton": triton})
    real_call = endpoints.tensors["triton-http"]

    def drifting(spec, inputs):
        return {k: v + np.float32(0.01) for k, v in real_call(spec, inputs).items()}

    endpoints.tensors["triton-http"] = drifting
    checks = {c.endpoint: c for c in check_golden(spec, LAYOUT, endpoints)}
    assert checks["torchserve-rest"].passed
    failed: Check = checks["triton-http"]
    assert not failed.passed and "probability index (0, 0): served" in failed.detail
    assert not checks["torchserve vs triton"].passed
