"""Bench ratios and targets without servers or timing: each served point against the stock
setup and the in-process limit, and each of the project's performance targets met, missed or
not measured."""

from __future__ import annotations

import pytest

from scripts.measure.bench.comparisons import comparisons, gateway_overhead, one_client
from scripts.measure.bench.report import gateway_section, one_client_section
from scripts.measure.bench.target_checks import (
    gateway_target,
    every_load_target,
    int8_target,
    limit_target,
    stock_target,
)
from scripts.measure.bench.targets import evaluate_targets
from tests.unit.measure.fake_points import LIMITS, in_process_batch1, point


def test_comparisons_are_ratios_to_the_same_protocol_and_concurrency():
    points = [
        point("digits_cnn", "triton_stock", "http", 16, 1000, p99=20),
        point("digits_cnn", "triton_stock", "grpc", 16, 500, p99=40),
        point("digits_cnn", "triton", "http", 16, 2000, p99=10),
        point("digits_cnn", "triton", "grpc", 16, 2000, p99=10),
    ]
    comps = {(c["setup"], c["protocol"]): c for c in comparisons(points, LIMITS)}
    assert comps[("triton", "http")]["throughput_vs_stock"] == pytest.approx(2.0)
    assert (
        comps[("triton", "grpc")]["throughput_vs_stock"],
        comps[("triton", "grpc")]["p99_vs_stock"],
    ) == pytest.approx((4.0, 0.25))
    assert comps[("triton", "http")]["throughput_vs_limit_max_batch"] == pytest.approx(2000 / 9000)
    assert comps[("triton_stock", "http")]["throughput_vs_stock"] == pytest.approx(1.0)


def test_one_client_compares_every_setup_of_ours_at_concurrency_1_with_its_runtimes_stock():
    points = [
        point("digits_cnn", "triton_stock", "http", 1, 2800, p50=0.33),
        point("digits_cnn", "triton_stock", "grpc", 1, 2400, p50=0.38),
        point("digits_cnn", "triton", "http", 1, 2100, p50=0.45),
        point("digits_cnn", "triton", "grpc", 1, 2400, p50=0.38),
        point("digits_cnn", "triton_int8", "http", 1, 1400, p50=0.70),
        point("digits_cnn", "triton", "http", 16, 6000, p50=2.0),  # not one client
        {**point("digits_cnn", "torchserve", "http", 1, 0), "error": "refused"},
    ]
    rows = {(r["setup"], r["protocol"]): r for r in one_client(points)}
    assert set(rows) == {("triton", "http"), ("triton", "grpc"), ("triton_int8", "http")}
    assert rows[("triton", "http")]["throughput_vs_stock"] == pytest.approx(2100 / 2800)
    assert rows[("triton", "http")]["p50_added_ms"] == pytest.approx(0.12)
    assert (
        rows[("triton_int8", "http")]["stock_p50_ms"] == 0.33
    )  # the runtime's stock, same protocol
    table = one_client_section(list(rows.values()))
    assert "| digits_cnn | triton | grpc | 1.00x | 0.380 vs 0.380 | +0.000 |" in table


def test_failed_points_are_left_out_of_ratios_and_targets_are_not_measured_rather_than_missed():
    points = [
        {
            "model": "digits_cnn",
            "setup": "triton_stock",
            "protocol": "http",
            "concurrency": 16,
            "error": "x",
        },
        point("digits_cnn", "triton", "http", 16, 2000),
    ]
    (comp,) = comparisons(points, LIMITS)
    assert comp["throughput_vs_stock"] is None
    assert stock_target(points, "digits_cnn", "triton", 16, 1.5)["met"] is None
    assert stock_target([], "digits_cnn", "torchserve", 16, 3.0)["met"] is None


@pytest.mark.parametrize("ours, p99, met", [(3100, 10, True), (2900, 10, False), (3100, 30, False)])
def test_stock_target_needs_the_factor_and_a_p99_no_worse(ours, p99, met):
    points = [
        point("digits_cnn", "triton_stock", proto, 16, 2000, p99=20) for proto in ("http", "grpc")
    ]
    points += [
        point("digits_cnn", "triton", proto, 16, ours, p99=p99) for proto in ("http", "grpc")
    ]
    result = stock_target(points, "digits_cnn", "triton", 16, 1.5)
    assert result["met"] is met
    assert "http:" in result["detail"] and "grpc:" in result["detail"]


def test_limit_target_covers_both_runtimes():
    points = [
        point("sentiment_lstm", "triton", "http", 64, 900),
        point("sentiment_lstm", "triton", "grpc", 64, 850),
        point("sentiment_lstm", "torchserve", "http", 64, 700),
    ]
    result = limit_target(points, LIMITS, "sentiment_lstm", 64, 0.8)
    assert result["met"] is False
    assert {(c["runtime"], c["protocol"]): c["met"] for c in result["checks"]} == {
        ("triton", "http"): True,
        ("triton", "grpc"): True,
        ("torchserve", "http"): False,
    }


def test_evaluate_targets_names_a_status_and_a_limiting_factor():
    in_proc = in_process_batch1()
    targets = evaluate_targets(
        [point("digits_cnn", "triton", "http", 1, 100, p50=5.0)], LIMITS, in_proc
    )
    assert [t["id"] for t in targets][:4] == [
        "digits_torchserve_vs_stock",  # the registry's order
        "digits_triton_vs_stock",
        "sentiment_served_vs_in_process",
        "digits_cnn_torchserve_every_load",
    ]
    # per model and runtime: every load, 3x at 64; Triton through the gateway (perf_analyzer's
    # torchserve client has no TLS)
    assert len(targets) == 3 + 2 * 2 * 2 + 1
    assert all(t["status"] == "not measured" for t in targets)
    assert "4.90 ms" in targets[1]["limited_by"]


@pytest.mark.parametrize(
    "ours_c1, p50, met", [(3100, 0.34, True), (2900, 0.34, False), (3100, 0.36, False)]
)
def test_every_load_target_needs_stock_throughput_at_each_level_and_p50_within_the_slack(
    ours_c1, p50, met
):
    points = []
    for level, stock in ((1, 3000), (4, 3000), (16, 3000), (64, 3000)):
        for proto in ("http", "grpc"):
            points.append(point("digits_cnn", "triton_stock", proto, level, stock, p50=0.3))
            points.append(
                point(
                    "digits_cnn",
                    "triton",
                    proto,
                    level,
                    ours_c1 if level == 1 else 9000,
                    p50=p50 if level == 1 else 2.0,
                )
            )
    result = every_load_target(points, "digits_cnn", "triton", [1, 4, 16, 64])
    assert result["met"] is met and len(result["checks"]) == 8
    assert every_load_target(points[:-1], "digits_cnn", "triton", [1, 4, 16, 64])["met"] is None


def test_int8_target_reads_the_gate_and_the_in_process_ratio_at_the_max_batch():
    gate = {
        "metric": "held-out accuracy",
        "fp32": 0.9694,
        "int8": 0.9694,
        "drop": 0.0,
        "limit": 1.0,
        "passed": True,
    }
    int8 = {
        "digits_cnn": {
            "bytes": 62721,
            "fp32_bytes": 224479,
            "gate": gate,
            "in_process": [
                {"batch": 1, "fp32": 56000.0, "int8": 32000.0, "ratio": 0.57},
                {"batch": 32, "fp32": 159000.0, "int8": 55000.0, "ratio": 0.35},
            ],
        }
    }
    result = int8_target(int8, "digits_cnn")
    assert result["met"] is False
    assert "batch 32: 55000/s vs 159000/s = 0.35x (needs 1.5x)" in result["detail"]
    assert "28% of the fp32" in result["detail"]
    targets = evaluate_targets([], LIMITS, {}, int8)
    assert targets[-1]["id"] == "digits_cnn_int8_in_process" and targets[-1]["status"] == "missed"
    assert "quantise/dequantise" in targets[-1]["limited_by"]
    assert int8_target({}, "digits_cnn")["met"] is None


def test_the_gateway_is_compared_with_the_same_deployment_direct_at_each_level():
    """p50 added at one client and throughput kept at 64, against the direct points of the same
    run; a failed point leaves the target not measured, never met."""
    points = [
        point("digits_cnn", "triton", "http", 1, 2500, p50=0.40),
        point("digits_cnn", "triton_gateway", "http", 1, 2000, p50=0.55),
        point("digits_cnn", "triton", "http", 64, 5000, p50=10.0),
        point("digits_cnn", "triton_gateway", "http", 64, 4600, p50=11.0),
        point("digits_cnn", "triton", "grpc", 1, 2600, p50=0.38),  # no gateway over gRPC
    ]
    rows = gateway_overhead(points)
    assert [(r["concurrency"], r["runtime"]) for r in rows] == [(1, "triton"), (64, "triton")]
    assert rows[0]["p50_added_ms"] == pytest.approx(0.15)
    assert rows[1]["throughput_vs_direct"] == pytest.approx(0.92)
    assert gateway_target(rows, "digits_cnn", "triton")["met"] is True
    slower = [{**r, "throughput_vs_direct": 0.6} if r["concurrency"] == 64 else r for r in rows]
    assert gateway_target(slower, "digits_cnn", "triton")["met"] is False
    assert gateway_target(rows[:1], "digits_cnn", "triton")["met"] is None
    assert "Through the gateway" in "\n".join(gateway_section(rows))
