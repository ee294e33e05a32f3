"""The bench's setups without servers or timing: the stock Triton model and TorchServe archive,
the request data each setup is sent, and each runtime's bench, int8 and variant deployments with
their servers faked."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from scripts.measure.bench.deployments import LoadTarget
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


def fake_servers(monkeypatch, stopped, stock_config=True):
    """Each server module's start/wait_ready/stop replaced: nothing is launched."""

    def ts_start(template, store, names, ports, workdir, overrides=None, stubs=None):
        assert ("default_workers_per_model" in template.read_text()) is not stock_config
        assert not overrides  # a bench server never registers versions
        assert all((store / f"{n}.mar").exists() for n in names)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "key_file.json").write_text(json.dumps({"inference": {"key": "tok"}}))
        return ts.TorchServe(workdir.resolve(), ports)

    def tr_start(repo, names, ports, workdir, open_statistics=False):
        assert all((repo / n / "config.pbtxt").exists() for n in names)
        return tr.Triton(workdir.resolve(), ports, admin_key="adm")

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
        ) as deployed:
            targets = deployed.targets
            assert {(setup, protocol) for model, setup, protocol, _ in targets} == expected
            assert all(
                t.data.exists()
                and t.service_kind == runtime
                and t.token == ("tok" if runtime == "torchserve" else None)
                for *_, t in targets
            )
            # Triton: the admin key (statistics) with perf_analyzer's HTTP requests only
            assert all(
                t.headers == ((("admin-key", "adm"),) if (runtime, p) == ("triton", "http") else ())
                for _, _, p, t in targets
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
