"""How the bench measures and reports, without servers or timing: the in-process limit,
perf_analyzer's commands and points (retries, unstable windows, the token kept out), and the
report's JSON, Markdown and plots."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from scripts.measure import perf
from scripts.measure.bench import points as bench_points
from scripts.measure.bench.comparisons import comparisons
from scripts.measure.bench.inprocess import limit_of, tiled
from scripts.measure.bench.report import write_report
from scripts.measure.bench.run import MEASUREMENT
from scripts.measure.bench.targets import evaluate_targets
from scripts.measure.bench.deployments import LoadTarget
from tests.unit.measure.fake_points import LIMITS, in_process_batch1, point


def test_limit_is_the_best_of_eager_and_onnx():
    results = [
        {"format": "eager", "threads": 1, "batch": 32, "throughput": 10.0},
        {"format": "onnx", "threads": 2, "batch": 32, "throughput": 30.0},
        {"format": "aoti", "threads": 2, "batch": 32, "throughput": 99.0},
        {"format": "onnx", "threads": 2, "batch": 1, "throughput": 5.0},
    ]
    assert limit_of(results, 32)["throughput"] == 30.0
    assert limit_of(results, 8) is None


def test_tiled_cycles_golden_rows_to_the_batch_size():
    out = tiled({"x": np.arange(6, dtype=np.int64).reshape(3, 2)}, 5)["x"]
    assert out.shape == (5, 2) and out.dtype == np.int64
    assert out[3].tolist() == [0, 1]


def test_perf_command_sends_the_token_and_redacts_it(tmp_path):
    cmd = perf.command(
        "m",
        "127.0.0.1:1",
        "http",
        16,
        tmp_path / "d.json",
        tmp_path / "r.csv",
        MEASUREMENT,
        "torchserve",
        "secret-key",
    )
    assert cmd[cmd.index("--service-kind") + 1] == "torchserve"
    assert "Authorization:Bearer secret-key" in cmd
    assert cmd[cmd.index("--concurrency-range") + 1] == "16:16"
    text = bench_points.redact(cmd, "secret-key")
    assert "secret-key" not in text and bench_points.TOKEN_PLACEHOLDER in text
    triton = perf.command(
        "m", "127.0.0.1:1", "grpc", 1, tmp_path / "d.json", tmp_path / "r.csv", MEASUREMENT
    )
    assert "torchserve" not in triton and "-H" not in triton


def test_perf_point_retries_once_with_a_looser_criterion_and_never_shows_the_key(
    tmp_path, monkeypatch
):
    calls = []

    def fake_run(cmd, **kwargs):  # the first window never stabilises; the retry writes the CSV
        calls.append(cmd[cmd.index("--stability-percentage") + 1])
        if len(calls) == 2:
            Path(cmd[cmd.index("-f") + 1]).write_text(
                "Concurrency,Inferences/Second,p50 latency,p90 latency,p99 latency\n"
                "4,250.5,2000,3000,4000\n"
            )
        return subprocess.CompletedProcess(cmd, 1 if len(calls) == 1 else 0, "", "unstable")

    monkeypatch.setattr(bench_points.subprocess, "run", fake_run)
    target = LoadTarget("m", "127.0.0.1:1", "http", "torchserve", tmp_path / "d.json", "secret-key")
    result = bench_points.perf_point(target, 4, tmp_path, MEASUREMENT)
    assert calls == [str(MEASUREMENT["stability"]), str(bench_points.RETRY_STABILITY)]
    assert (result["throughput"], result["p99_ms"]) == (250.5, 4.0) and "secret-key" not in result[
        "command"
    ]
    assert "unstable" not in result


def test_a_point_that_never_stabilises_is_taken_as_measured_and_flagged(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):  # bimodal latency: only the last, lenient attempt completes
        calls.append(
            (
                cmd[cmd.index("--stability-percentage") + 1],
                cmd[cmd.index("--measurement-interval") + 1],
            )
        )
        if len(calls) == 3:
            Path(cmd[cmd.index("-f") + 1]).write_text(
                "Concurrency,Inferences/Second,p50 latency,p90 latency,p99 latency\n"
                "4,40.8,32560,90000,473529\n"
            )
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 1, "", "Failed to obtain stable measurement")

    monkeypatch.setattr(bench_points.subprocess, "run", fake_run)
    target = LoadTarget("m", "127.0.0.1:1", "http", "torchserve", tmp_path / "d.json", "k")
    result = bench_points.perf_point(target, 4, tmp_path, MEASUREMENT)
    assert calls[-1] == ("1000", "3000") and result["unstable"] and result["throughput"] == 40.8


def fake_report():
    points = [
        point(
            "digits_cnn",
            s,
            p,
            c,
            100.0 * c * (2 if not s.endswith("stock") else 1),
            p50=c,
            p99=2 * c,
        )
        for s in ("triton_stock", "triton")
        for p in ("http", "grpc")
        for c in (1, 4)
    ]
    points.append(
        {
            "model": "digits_cnn",
            "setup": "torchserve",
            "protocol": "http",
            "concurrency": 1,
            "error": "inference failed with error code 400",
            "command": "x",
        }
    )
    points += [
        point("digits_cnn", "triton_int8", "http", c, 150.0 * c, p50=c, p99=2 * c) for c in (1, 4)
    ]
    in_proc = in_process_batch1(calls=10)
    return {
        "created": "now",
        "quick": True,
        "invocation": "python -m scripts bench",
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "memory_gib": 8,
            "python": "3.11",
            "versions": {"torch": "x"},
        },
        "measurement": MEASUREMENT,
        "timings": {"total_s": 1.0},
        "models": {
            "digits_cnn": {
                "max_batch_size": 32,
                "max_queue_delay_ms": 5,
                "serving_format": "torchscript",
                "workers": {"min": 1, "max": 1},
                "instances": 1,
                "served_formats": {"torchserve": "torchscript", "triton": "onnx"},
            }
        },
        "in_process": in_proc,
        "limits": {"digits_cnn": LIMITS["digits_cnn"]},
        "points": points,
        "int8": {
            "digits_cnn": {
                "method": "static",
                "bytes": 62721,
                "fp32_bytes": 224479,
                "gate": {
                    "metric": "held-out accuracy",
                    "fp32": 0.9694,
                    "int8": 0.9650,
                    "drop": 0.44,
                },
                "in_process": [{"batch": 32, "fp32": 159000.0, "int8": 55000.0, "ratio": 0.35}],
            }
        },
        "comparisons": comparisons(points, LIMITS),
        "targets": evaluate_targets(points, LIMITS, in_proc),
    }


def test_report_writes_json_markdown_and_plots(tmp_path):
    files = write_report(fake_report(), tmp_path)
    assert {f.name for f in files} == {
        "bench.json",
        "bench.md",
        "bench_digits_cnn_throughput.png",
        "bench_digits_cnn_latency.png",
    }
    assert all(f.stat().st_size > 0 for f in files)
    text = (tmp_path / "bench.md").read_text()
    assert "| triton | grpc | 4 | 800.0 |" in text and "2.00x" in text
    assert "failed: inference failed with error code 400" in text
    assert "![bench_digits_cnn_throughput.png](bench_digits_cnn_throughput.png)" in text
    assert (
        "| digits_cnn | static | held-out accuracy | 0.9694 | 0.9650 | 0.44 | 28% "
        "| batch 32: 0.35x |" in text
    )
    assert (
        "| digits_cnn | triton (onnx) | c=1: 150 vs 200/s (0.75x), c=4: 600 vs 800/s (0.75x) |"
        in text
    )
    assert (
        json.loads((tmp_path / "bench.json").read_text())["targets"][0]["status"] == "not measured"
    )  # no c=16
