"""The bench and tune logic without servers or timing: ratios, targets, the stock setups'
configs and archives, perf_analyzer's input files, the report writers."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from scripts import bench, perf, tune
from scripts.spec import load_spec
from scripts.triton_repo import checked_signature, read_config
from tests.conftest import REPO

SPEC = {m.name: m for m in load_spec(REPO / "models.yaml").models}


def point(model, setup, protocol, concurrency, throughput, p50=1.0, p99=2.0):
    return {"model": model, "setup": setup, "protocol": protocol, "concurrency": concurrency,
            "throughput": throughput, "p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "command": "perf_analyzer ..."}


def limits(max_batch=1000.0, batch1=100.0):
    return {"sentiment_lstm": {"batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": batch1, "p50_ms": 0.5},
                               "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": max_batch}},
            "digits_cnn": {"batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0, "p50_ms": 0.1},
                           "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": 9000.0}}}


def test_comparisons_are_ratios_to_the_same_protocol_and_concurrency():
    points = [point("digits_cnn", "triton_stock", "http", 16, 1000, p99=20),
              point("digits_cnn", "triton_stock", "grpc", 16, 500, p99=40),
              point("digits_cnn", "triton", "http", 16, 2000, p99=10),
              point("digits_cnn", "triton", "grpc", 16, 2000, p99=10)]
    comps = {(c["setup"], c["protocol"]): c for c in bench.comparisons(points, limits())}
    assert comps[("triton", "http")]["throughput_vs_stock"] == pytest.approx(2.0)
    assert comps[("triton", "grpc")]["throughput_vs_stock"] == pytest.approx(4.0)
    assert comps[("triton", "grpc")]["p99_vs_stock"] == pytest.approx(0.25)
    assert comps[("triton", "http")]["throughput_vs_limit_max_batch"] == pytest.approx(2000 / 9000)
    assert comps[("triton_stock", "http")]["throughput_vs_stock"] == pytest.approx(1.0)


def test_failed_points_are_left_out_of_ratios():
    points = [{"model": "digits_cnn", "setup": "triton_stock", "protocol": "http", "concurrency": 16, "error": "x"},
              point("digits_cnn", "triton", "http", 16, 2000)]
    (comp,) = bench.comparisons(points, limits())
    assert comp["throughput_vs_stock"] is None


@pytest.mark.parametrize("ours, p99, met", [(3100, 10, True), (2900, 10, False), (3100, 30, False)])
def test_stock_target_needs_the_factor_and_a_p99_no_worse(ours, p99, met):
    points = [point("digits_cnn", "triton_stock", proto, 16, 2000, p99=20) for proto in ("http", "grpc")]
    points += [point("digits_cnn", "triton", proto, 16, ours, p99=p99) for proto in ("http", "grpc")]
    result = bench.stock_target(points, "digits_cnn", "triton", 16, 1.5)
    assert result["met"] is met
    assert "http:" in result["detail"] and "grpc:" in result["detail"]


def test_a_target_without_measurements_is_not_measured_rather_than_missed():
    result = bench.stock_target([], "digits_cnn", "torchserve", 16, 3.0)
    assert result["met"] is None


def test_limit_target_covers_both_runtimes():
    points = [point("sentiment_lstm", "triton", "http", 64, 900), point("sentiment_lstm", "triton", "grpc", 64, 850),
              point("sentiment_lstm", "torchserve", "http", 64, 700)]
    result = bench.limit_target(points, limits(max_batch=1000), "sentiment_lstm", 64, 0.8)
    assert result["met"] is False
    assert {(c["runtime"], c["protocol"]): c["met"] for c in result["checks"]} == {
        ("triton", "http"): True, ("triton", "grpc"): True, ("torchserve", "http"): False}


def test_evaluate_targets_names_a_status_and_a_limiting_factor():
    in_proc = {"digits_cnn": [{"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0, "p50_ms": 0.1,
                               "p99_ms": 0.2}]}
    points = [point("digits_cnn", "triton", "http", 1, 100, p50=5.0)]
    targets = bench.evaluate_targets(points, limits(), in_proc)
    assert [t["id"] for t in targets] == ["digits_triton_vs_per_request", "digits_torchserve_vs_stock",
                                          "sentiment_served_vs_in_process"]
    assert all(t["status"] == "not measured" for t in targets)
    assert "4.90 ms" in targets[0]["limited_by"]


def test_limit_is_the_best_of_eager_and_onnx():
    results = [{"format": "eager", "threads": 1, "batch": 32, "throughput": 10.0},
               {"format": "onnx", "threads": 2, "batch": 32, "throughput": 30.0},
               {"format": "aoti", "threads": 2, "batch": 32, "throughput": 99.0},
               {"format": "onnx", "threads": 2, "batch": 1, "throughput": 5.0}]
    assert bench.limit_of(results, 32)["throughput"] == 30.0
    assert bench.limit_of(results, 8) is None


def test_tiled_cycles_golden_rows_to_the_batch_size():
    rows = {"x": np.arange(6, dtype=np.int64).reshape(3, 2)}
    out = bench.tiled(rows, 5)["x"]
    assert out.shape == (5, 2) and out.dtype == np.int64
    assert out[3].tolist() == [0, 1]


def test_stock_triton_config_has_no_dynamic_batching_and_one_instance():
    spec = SPEC["digits_cnn"]
    config = bench.stock_triton_config(spec, checked_signature(spec, REPO))
    assert config.name == "digits_cnn_per_request"
    assert not config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, config.instance_group[0].KIND_CPU)]
    assert config.max_batch_size == spec.batching.max_batch_size
    assert [t.name for t in config.input] == ["image"] and list(config.input[0].dims) == [1, 28, 28]
    assert "role" not in config.parameters


def test_stock_triton_model_is_written_with_its_onnx_file(tmp_path):
    name = bench.write_stock_triton(SPEC["sentiment_lstm"], REPO, tmp_path)
    folder = tmp_path / name
    assert read_config(folder / "config.pbtxt").name == name
    assert (folder / "1" / "model.onnx").exists()
    source = (folder / "1" / "model.py").read_text()
    assert "for request in requests" in source
    compile(source, "model.py", "exec")


def test_stock_mar_holds_the_torchscript_file_and_no_model_config(tmp_path):
    name = bench.write_stock_mar(SPEC["digits_cnn"], REPO, tmp_path)
    with zipfile.ZipFile(tmp_path / f"{name}.mar") as mar:
        files = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert "model.torchscript.pt" in files and "stock_handler.py" in files
    assert "model-config.yaml" not in files  # TorchServe's defaults: batch size 1, default workers
    assert manifest["model"]["handler"] == "stock_handler.py"
    compile(bench.STOCK_HANDLER, "stock_handler.py", "exec")


def test_stock_torchserve_config_drops_only_the_worker_default():
    rendered = "a=1\ndefault_workers_per_model=1\ndisable_token_authorization=false\n"
    assert bench.stock_torchserve_config(rendered) == "a=1\ndisable_token_authorization=false\n"


def test_torchserve_bodies_carry_the_same_values_for_both_setups(tmp_path):
    rows = {"token_ids": np.array([[3, 4, 0], [5, 6, 7]], dtype=np.int64)}
    stock = bench.torchserve_bodies(SPEC["sentiment_lstm"], rows, stock=True)
    ours = bench.torchserve_bodies(SPEC["sentiment_lstm"], rows, stock=False)
    assert [json.loads(b) for b in stock] == [[3, 4, 0], [5, 6, 7]]
    assert [json.loads(b) for b in ours] == [{"tensors": {"token_ids": [[3, 4, 0]]}},
                                             {"tensors": {"token_ids": [[5, 6, 7]]}}]
    data = json.loads(bench.torchserve_input_data(stock, tmp_path, "s").read_text())
    assert [len(e["TORCHSERVE_INPUT"]) for e in data["data"]] == [1, 1]
    assert json.loads(open(data["data"][1]["TORCHSERVE_INPUT"][0]).read()) == [5, 6, 7]


def test_perf_command_sends_the_token_and_redacts_it(tmp_path):
    cmd = perf.command("m", "127.0.0.1:1", "http", 16, tmp_path / "d.json", tmp_path / "r.csv",
                       bench.MEASUREMENT, "torchserve", "secret-key")
    assert cmd[cmd.index("--service-kind") + 1] == "torchserve"
    assert "Authorization:Bearer secret-key" in cmd
    assert cmd[cmd.index("--concurrency-range") + 1] == "16:16"
    text = bench.redact(cmd, "secret-key")
    assert "secret-key" not in text and bench.TOKEN_PLACEHOLDER in text
    triton = perf.command("m", "127.0.0.1:1", "grpc", 1, tmp_path / "d.json", tmp_path / "r.csv",
                          bench.MEASUREMENT)
    assert "--service-kind" not in triton and "-H" not in triton


def fake_report():
    points = [point("digits_cnn", s, p, c, 100.0 * c * (2 if not s.endswith("stock") else 1), p50=c, p99=2 * c)
              for s in ("triton_stock", "triton") for p in ("http", "grpc") for c in (1, 4)]
    points.append({"model": "digits_cnn", "setup": "torchserve", "protocol": "http", "concurrency": 1,
                   "error": "inference failed with error code 400", "command": "x"})
    lim = limits()
    in_proc = {"digits_cnn": [{"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0, "p50_ms": 0.1,
                               "p99_ms": 0.2, "calls": 10}]}
    return {"created": "now", "quick": True, "invocation": "python -m scripts bench",
            "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 8, "python": "3.11", "versions": {"torch": "x"}},
            "measurement": bench.MEASUREMENT, "timings": {"total_s": 1.0},
            "models": {"digits_cnn": {"max_batch_size": 32, "max_queue_delay_ms": 5, "serving_format": "torchscript",
                                      "workers": {"min": 1, "max": 1}, "instances": 1}},
            "in_process": in_proc, "limits": {"digits_cnn": lim["digits_cnn"]}, "points": points,
            "comparisons": bench.comparisons(points, lim), "targets": bench.evaluate_targets(points, lim, in_proc)}


def test_report_writes_json_markdown_and_plots(tmp_path):
    files = bench.write_report(fake_report(), tmp_path)
    assert {f.name for f in files} == {"bench.json", "bench.md", "bench_digits_cnn_throughput.png",
                                       "bench_digits_cnn_latency.png"}
    assert all(f.stat().st_size > 0 for f in files)
    text = (tmp_path / "bench.md").read_text()
    assert "| triton | grpc | 4 | 800.0 |" in text and "2.00x" in text
    assert "failed: inference failed with error code 400" in text
    assert "![bench_digits_cnn_throughput.png](bench_digits_cnn_throughput.png)" in text
    assert json.loads((tmp_path / "bench.json").read_text())["targets"][0]["status"] == "not measured"  # no point at concurrency 16


def test_tune_grid_starts_with_the_spec_and_skips_duplicates():
    spec = SPEC["digits_cnn"]
    points = tune.grid(spec)
    assert points[0]["baseline"] and points[0]["max_batch_size"] == spec.batching.max_batch_size
    keys = [(p["max_batch_size"], p["max_queue_delay_ms"], p["instances"], p["format"]) for p in points]
    assert len(keys) == len(set(keys))
    assert {p["format"] for p in points} <= set(spec.export.formats)


def test_tune_variant_keeps_the_name_and_changes_only_the_swept_fields():
    spec = SPEC["digits_cnn"]
    variant = tune.variant_spec(spec, {"max_batch_size": 8, "max_queue_delay_ms": 0.5, "instances": 2, "format": "onnx"})
    assert variant.name == spec.name and variant.inputs == spec.inputs
    assert (variant.batching.max_batch_size, variant.batching.max_queue_delay_ms, variant.serving.instances) == (8, 0.5, 2)
    assert tune.variant_name(spec, 8, 0.5, 2, "onnx") == "digits_cnn__b8_d0p5_i2_onnx"


def test_tune_best_respects_the_p99_slack():
    results = [{"baseline": True, "throughput": 100, "p99_ms": 10, "max_batch_size": 32},
               {"baseline": False, "throughput": 300, "p99_ms": 50, "max_batch_size": 8},
               {"baseline": False, "throughput": 200, "p99_ms": 12, "max_batch_size": 16},
               {"baseline": False, "error": "x"}]
    assert tune.best_of(results)["throughput"] == 200
    assert tune.best_of([]) is None
