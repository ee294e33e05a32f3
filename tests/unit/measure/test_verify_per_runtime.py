"""`make verify` when the runtimes serve different formats (per_runtime): each endpoint is held
to the model its runtime serves, and the runtimes are compared only where they serve alike."""

from __future__ import annotations

import numpy as np

from scripts.pipeline.paths import golden
from scripts.measure.verify_served import Endpoints, check_golden, reference_runner
from scripts.spec import load_spec
from scripts.spec.overrides import RuntimeSettings
from tests.conftest import LAYOUT, REPO

DIGITS = next(m for m in load_spec(REPO / "models.yaml").models if m.name == "digits_cnn")


def answering(runner):
    return lambda spec, inputs: dict(zip(spec.output_names, runner(inputs)))


def test_int8_on_triton_fp32_on_torchserve_each_checked_against_its_own_model(built_examples):
    spec = DIGITS.model_copy(
        update={"per_runtime": {"triton": RuntimeSettings(format="onnx_int8")}}
    )
    int8, eager = (
        reference_runner(spec, LAYOUT, "onnx_int8"),
        reference_runner(spec, LAYOUT, "eager"),
    )
    endpoints = Endpoints(
        {"triton-http": answering(int8), "torchserve-rest": answering(eager)}, lambda s: {}
    )
    checks = check_golden(spec, LAYOUT, endpoints)
    assert [c.endpoint for c in checks] == [
        "int8 in-process vs eager fp32 (drift, gated at export)",
        "triton-http",
        "torchserve-rest",
    ]  # no int8-vs-fp32 cross check
    assert all(c.passed for c in checks), [c.detail for c in checks if not c.passed]
    rows = golden(spec, LAYOUT)
    assert (
        np.abs(int8(rows)[0] - eager(rows)[0]).max() > spec.tolerance.atol
    )  # the two models differ

    swapped = Endpoints(
        {"triton-http": answering(eager), "torchserve-rest": answering(int8)}, lambda s: {}
    )
    assert [c.passed for c in check_golden(spec, LAYOUT, swapped)][1:] == [False, False]
