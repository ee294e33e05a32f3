"""Bench without servers or timing: ratios, targets, the stock setups, perf_analyzer's
input data and commands, the report, and each plugin's bench_deployment with its server faked."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scripts.measure import perf
from scripts.measure.bench import points as bench_points
from scripts.measure.bench.inprocess import limit_of, tiled
from scripts.measure.bench.report import write_report
from scripts.measure.bench.run import MEASUREMENT
from scripts.measure.bench.comparisons import comparisons
from scripts.measure.bench.target_checks import (
    every_load_target,
    int8_target,
    limit_target,
    stock_target,
)
from scripts.measure.bench.targets import evaluate_targets
from scripts.runtimes.protocols import LoadTarget
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve import stock as ts_stock
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton import stock as tr_stock
from scripts.runtimes.triton.configs import read_config
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

# These tests read the example models' artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = {m.name: m for m in load_spec(REPO / "models.yaml").models}


def point(model, setup, protocol, concurrency, throughput, p50=1.0, p99=2.0):
    return {
        "model": model,
        "setup": setup,
        "protocol": protocol,
        "concurrency": concurrency,
        "throughput": throughput,
        "p50_ms": p50,
        "p90_ms": p50,
        "p99_ms": p99,
        "command": "perf_analyzer ...",
    }


LIMITS = {
    "sentiment_lstm": {
        "batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": 100.0, "p50_ms": 0.5},
        "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": 1000.0},
    },
    "digits_cnn": {
        "batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0, "p50_ms": 0.1},
        "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": 9000.0},
    },
}


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
    in_proc = {
        "digits_cnn": [
            {
                "format": "onnx",
                "threads": 1,
                "batch": 1,
                "throughput": 2000.0,
                "p50_ms": 0.1,
                "p99_ms": 0.2,
            }
        ]
    }
    targets = evaluate_targets(
        [point("digits_cnn", "triton", "http", 1, 100, p50=5.0)], LIMITS, in_proc
    )
    assert [t["id"] for t in targets][:4] == [
        "digits_triton_vs_per_request",
        "digits_torchserve_vs_stock",
        "sentiment_served_vs_in_process",
        "digits_cnn_triton_every_load",
    ]
    assert len(targets) == 3 + 2 * 2 * 2  # per model and runtime: every load, 3x at 64
    assert all(t["status"] == "not measured" for t in targets)
    assert "4.90 ms" in targets[0]["limited_by"]


@pytest.mark.parametrize(
    "ours_c1, p50, met", [(3100, 0.55, True), (2900, 0.55, False), (3100, 0.65, False)]
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


def test_stock_triton_config_has_no_dynamic_batching_and_one_instance():
    spec = SPEC["digits_cnn"]
    config = tr_stock.stock_config(spec, LAYOUT)
    assert config.name == "digits_cnn_per_request" and config.backend == "python"
    assert not config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, config.instance_group[0].KIND_CPU)
    ]
    assert config.max_batch_size == spec.batching.max_batch_size
    assert [t.name for t in config.input] == ["image"] and list(config.input[0].dims) == [1, 28, 28]
    assert "role" not in config.parameters


def test_stock_triton_model_is_written_with_its_onnx_file(tmp_path):
    spec = SPEC["sentiment_lstm"]
    name = tr_stock.write_stock_model(spec, LAYOUT, tmp_path)
    version = tmp_path / name / str(spec.version)
    assert (
        read_config(tmp_path / name / "config.pbtxt").name == name
        and (version / "model.onnx").exists()
    )
    source = (version / "model.py").read_text()
    assert "for request in requests" in source
    compile(source, "model.py", "exec")


def test_stock_mar_holds_the_torchscript_file_and_no_model_config(tmp_path):
    name = ts_stock.write_stock_mar(SPEC["digits_cnn"], LAYOUT, tmp_path)
    with zipfile.ZipFile(tmp_path / f"{name}.mar") as mar:
        files = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert "model.torchscript.pt" in files and "stock_handler.py" in files
    assert "model-config.yaml" not in files  # TorchServe's defaults: batch size 1, default workers
    assert manifest["model"]["handler"] == "stock_handler.py"
    compile(ts_stock.STOCK_HANDLER.read_text(), "stock_handler.py", "exec")


def test_stock_torchserve_config_drops_only_the_worker_default():
    rendered = "a=1\ndefault_workers_per_model=1\ndisable_token_authorization=false\n"
    assert ts_stock.config(rendered) == "a=1\ndisable_token_authorization=false\n"


def test_torchserve_bodies_carry_the_same_values_for_both_setups(tmp_path):
    rows = {"token_ids": np.array([[3, 4, 0], [5, 6, 7]], dtype=np.int64)}
    stock = ts_stock.bodies(SPEC["sentiment_lstm"], rows, stock=True)
    ours = ts_stock.bodies(SPEC["sentiment_lstm"], rows, stock=False)
    assert [json.loads(b) for b in stock] == [[3, 4, 0], [5, 6, 7]]
    assert [json.loads(b) for b in ours] == [
        {"tensors": {"token_ids": [[3, 4, 0]]}},
        {"tensors": {"token_ids": [[5, 6, 7]]}},
    ]
    data = json.loads(ts_stock.input_data(stock, tmp_path, "s").read_text())
    assert [len(e["TORCHSERVE_INPUT"]) for e in data["data"]] == [1, 1]
    assert json.loads(open(data["data"][1]["TORCHSERVE_INPUT"][0]).read()) == [5, 6, 7]


def test_triton_input_data_sends_golden_rows_without_the_batch_axis(tmp_path):
    rows = {
        "x": np.arange(4, dtype=np.float32).reshape(2, 1, 2),
        "text": ["a", "b"],
        "raw": [b"ab", b"c"],
    }
    data = json.loads(tr_stock.write_input_data(rows, tmp_path / "d" / "in.json").read_text())[
        "data"
    ]
    assert data[1]["x"] == {"content": [2.0, 3.0], "shape": [1, 2]}
    assert data[0]["text"] == ["a"] and data[1]["raw"]["shape"] == [1]
    scalars = {"item_id": np.array([7, 9], dtype=np.int64)}  # a per-sample scalar: Triton dims [1]
    data = json.loads(tr_stock.write_input_data(scalars, tmp_path / "s.json").read_text())["data"]
    assert data[1]["item_id"] == {"content": [9], "shape": [1]}


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
                "Concurrency,Inferences/Second,p50 latency,p90 latency,p99 latency\n4,250.5,2000,3000,4000\n"
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
                "Concurrency,Inferences/Second,p50 latency,p90 latency,p99 latency\n4,40.8,32560,90000,473529\n"
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
    in_proc = {
        "digits_cnn": [
            {
                "format": "onnx",
                "threads": 1,
                "batch": 1,
                "throughput": 2000.0,
                "p50_ms": 0.1,
                "p99_ms": 0.2,
                "calls": 10,
            }
        ]
    }
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
        "| digits_cnn | static | held-out accuracy | 0.9694 | 0.9650 | 0.44 | 28% | batch 32: 0.35x |"
        in text
    )
    assert (
        "| digits_cnn | triton (onnx) | c=1: 150 vs 200/s (0.75x), c=4: 600 vs 800/s (0.75x) |"
        in text
    )
    assert (
        json.loads((tmp_path / "bench.json").read_text())["targets"][0]["status"] == "not measured"
    )  # no c=16


def fake_servers(monkeypatch, stopped, stock_config=True):
    """Each server module's start/wait_ready/stop replaced: nothing is launched."""

    def ts_start(template, store, names, ports, workdir, overrides=None, stubs=None):
        assert ("default_workers_per_model" in template.read_text()) is not stock_config
        assert not overrides  # a bench server never registers versions
        assert all((store / f"{n}.mar").exists() for n in names)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "key_file.json").write_text(json.dumps({"inference": {"key": "tok"}}))
        return ts.TorchServe(workdir.resolve(), ports)

    def tr_start(repo, names, ports, workdir):
        assert all((repo / n / "config.pbtxt").exists() for n in names)
        return tr.Triton(workdir.resolve(), ports)

    for module, start in ((ts, ts_start), (tr, tr_start)):
        monkeypatch.setattr(module, "start", start)
        monkeypatch.setattr(module, "wait_ready", lambda server, names, timeout_s=0: 0.0)
        monkeypatch.setattr(
            module, "stop", lambda workdir, *a, **k: stopped.append(workdir) or True
        )


@pytest.mark.parametrize(
    "runtime, expected",
    [
        (
            "triton",
            {
                ("triton_stock", "http"),
                ("triton_stock", "grpc"),
                ("triton", "http"),
                ("triton", "grpc"),
            },
        ),
        ("torchserve", {("torchserve_stock", "http"), ("torchserve", "http")}),
    ],
)
def test_bench_deployment_yields_both_setups_and_stops_its_server(
    runtime, expected, tmp_path, monkeypatch
):
    stopped = []
    fake_servers(monkeypatch, stopped)
    with pytest.raises(RuntimeError):  # a failure while measuring still stops the server
        with RUNTIMES[runtime].bench.deployment(
            [SPEC["digits_cnn"]], LAYOUT, tmp_path, lambda line: None
        ) as targets:
            assert {(setup, protocol) for model, setup, protocol, _ in targets} == expected
            assert all(
                t.data.exists()
                and t.service_kind == runtime
                and t.token == ("tok" if runtime == "torchserve" else None)
                for *_, t in targets
            )
            assert (
                len({t.model for *_, t in targets}) == 2
            )  # stock and ours served under their own names
            raise RuntimeError("measuring failed")
    assert len(stopped) == 1


@pytest.mark.parametrize("runtime", ["triton", "torchserve"])
def test_int8_deployment_serves_the_gated_int8_model_under_its_own_name(
    runtime, tmp_path, monkeypatch
):
    from scripts.measure.bench.int8 import int8_deployment

    stopped = []
    fake_servers(monkeypatch, stopped, stock_config=False)  # the project's own config.properties
    specs = [SPEC["digits_cnn"], SPEC["tabular_mlp"]]
    with int8_deployment(RUNTIMES[runtime], specs, LAYOUT, tmp_path) as targets:
        assert [(m, s, p) for m, s, p, _ in targets] == [
            ("digits_cnn", f"{runtime}_int8", "http"),
            ("tabular_mlp", f"{runtime}_int8", "http"),
        ]
        assert [t.model for *_, t in targets] == ["digits_cnn_int8", "tabular_mlp_int8"]
    built = tmp_path / "checkout" / ("triton_repo" if runtime == "triton" else "model_store")
    if runtime == "triton":
        assert (built / "digits_cnn_int8" / "1" / "model.int8.onnx").exists()
    else:
        with zipfile.ZipFile(built / "digits_cnn_int8.mar") as mar:
            assert "model.int8.onnx" in mar.namelist()
    assert len(stopped) == 1 and not (LAYOUT.model_store / "digits_cnn_int8.mar").exists()


def test_variants_that_fail_to_load_are_named_the_others_served_and_the_server_stopped(
    tmp_path, monkeypatch
):
    from scripts.measure import variants
    from scripts.runtimes.processes import ModelsFailed

    runtime, stopped = RUNTIMES["triton"], []
    spec = SPEC["tabular_mlp"]
    pairs = [(spec, spec.model_copy(update={"name": f"tabular_mlp_v{i}"})) for i in (1, 2)]

    def start(specs, layout, options):
        workdir = options.workdir
        failed = ModelsFailed("triton", {"tabular_mlp_v2": ["E model.py: boom"]}, 1.0)
        failed.server = tr.Triton(workdir, tr.Ports(1, 2, 3))
        raise failed

    monkeypatch.setattr(runtime.server, "start", start)
    monkeypatch.setattr(runtime.server, "stop", lambda workdir: stopped.append(workdir))
    scratch = variants.scratch_layout(LAYOUT, tmp_path / "checkout")
    with variants.serve_variants(runtime, pairs, LAYOUT, scratch, tmp_path) as targets:
        assert isinstance(targets["tabular_mlp_v1"], LoadTarget)
        assert targets["tabular_mlp_v2"] == "triton: failed to load: E model.py: boom"
    assert len(stopped) == 1
