"""Generating the Triton repository: configs through protobuf, checked against the ONNX graph."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.triton.configs import model_config, read_config, write_config
from scripts.runtimes.triton.ensemble import check_ensemble, ensemble_configs
from scripts.runtimes.triton.native import check_native
from scripts.runtimes.triton.repository import BACKENDS, build_repository, model_dirs
from scripts.runtimes.triton.signature import onnx_signature
from scripts.spec import Batching, BuildError
from tests.conftest import REPO, TENSOR_EXAMPLES

# These tests read the example models' artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = {m.name: m for m in TENSOR_EXAMPLES}  # generation: tests/integration/test_generation.py
LAYOUT = Layout.of(REPO)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """The project's spec built for every backend, from the real artifacts."""
    out = {}
    for backend in BACKENDS:
        folder = tmp_path_factory.mktemp(backend)
        build_repository(list(SPEC.values()), LAYOUT, folder, backend)
        out[backend] = folder
    return out


def test_every_config_parses_back_through_protobuf(repos):
    for backend, folder in repos.items():
        configs = sorted(folder.glob("*/config.pbtxt"))
        assert {p.parent.name for p in configs} == {
            d.name for m in SPEC.values() for d in model_dirs(m, folder)
        }
        for path in configs:
            config = read_config(path)
            assert config.name == path.parent.name
            assert (
                path.parent / "1"
            ).is_dir()  # every model, ensembles included, has a version dir


@pytest.mark.parametrize("name", sorted(SPEC))
def test_dims_and_dtypes_match_the_onnx_graph(repos, name):
    config = read_config(repos["python"] / name / "config.pbtxt")
    inputs, outputs = onnx_signature(LAYOUT.artifact_dir(SPEC[name]) / "model.onnx")
    for declared, graph in ((config.input, inputs), (config.output, outputs)):
        assert [(t.name, t.data_type, [-1, *t.dims]) for t in declared] == [
            (t.name, t.dtype, t.shape) for t in graph
        ]
    batching = SPEC[name].for_runtime("triton").batching  # per_runtime applied
    assert config.max_batch_size == batching.max_batch_size
    assert (
        config.dynamic_batching.max_queue_delay_microseconds == batching.max_queue_delay_ms * 1000
    )
    assert config.parameters["role"].string_value == "model"
    assert config.model_warmup[0].inputs[inputs[0].name].input_data_file


def test_python_backend_version_dir_is_self_contained(repos):
    version = repos["python"] / "digits_cnn" / "1"
    assert {"model.py", "serving_plan.json", "model.onnx"} <= {p.name for p in version.iterdir()}
    assert (version / "handlers" / "preprocessing" / "pipeline.py").exists()
    warmup = (repos["python"] / "digits_cnn" / "warmup" / "image.bin").read_bytes()
    golden = np.load(LAYOUT.artifact_dir(SPEC["digits_cnn"]) / "golden.npz")["input.image"][:1]
    assert warmup == golden.astype("<f4").tobytes()


def test_max_batch_size_zero_is_written_explicitly(tmp_path):
    spec = SPEC["tabular_mlp"].model_copy(update={"batching": Batching(max_batch_size=0)})
    build_repository([spec], LAYOUT, tmp_path)
    path = tmp_path / "tabular_mlp" / "config.pbtxt"
    assert "max_batch_size: 0" in path.read_text()
    config = read_config(path)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 30]  # no implicit batch axis: it is in the dims
    # no batch axis: the warmup is the golden request whole, as the model takes it
    golden = np.load(LAYOUT.artifact_dir(spec) / "golden.npz")["input.features"]
    assert list(config.model_warmup[0].inputs["features"].dims) == list(golden.shape)


def test_per_runtime_settings_reach_the_triton_config_and_the_torchserve_archive(tmp_path):
    import json
    import zipfile

    import yaml

    from scripts.runtimes.torchserve.archive import archive_model
    from scripts.spec.overrides import RuntimeSettings

    spec = SPEC["tabular_mlp"].model_copy(
        update={
            "per_runtime": {
                "triton": RuntimeSettings(max_queue_delay_ms=0, format="onnx_int8"),
                "torchserve": RuntimeSettings(max_queue_delay_ms=3, threads=2),
            }
        }
    )
    build_repository([spec], LAYOUT, tmp_path / "repo")
    config = read_config(tmp_path / "repo" / "tabular_mlp" / "config.pbtxt")
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert (tmp_path / "repo" / "tabular_mlp" / "1" / "model.int8.onnx").exists()
    archive_model(spec, LAYOUT, tmp_path / "store")
    with zipfile.ZipFile(tmp_path / "store" / "tabular_mlp.mar") as mar:
        settings = yaml.safe_load(mar.read("model-config.yaml"))
        plan = json.loads(mar.read("serving_plan.json"))
    assert (
        settings["maxBatchDelay"] == 3
        and plan["serving"]["threads"] == 2
        and plan["format"] == "onnx"
    )


def test_a_spec_that_disagrees_with_the_graph_names_model_tensor_and_field(tmp_path):
    spec = SPEC["digits_cnn"]
    wrong = spec.model_copy(
        update={"outputs": [spec.outputs[0].model_copy(update={"dtype": "float64"})]}
    )
    with pytest.raises(
        BuildError,
        match=r"digits_cnn: outputs 'logits': dtype: expected TYPE_FP64, found TYPE_FP32",
    ):
        build_repository([wrong], LAYOUT, tmp_path)
    wrong = spec.model_copy(
        update={"inputs": [spec.inputs[0].model_copy(update={"shape": [-1, 3, 28, 28]})]}
    )
    with pytest.raises(BuildError, match=r"inputs 'image': dims: expected \[-1, 3, 28, 28\]"):
        build_repository([wrong], LAYOUT, tmp_path)


def test_native_backends_use_their_file_names_and_tensor_naming(repos):
    onnx = read_config(repos["onnxruntime"] / "sentiment_lstm" / "config.pbtxt")
    assert (
        onnx.backend == "onnxruntime"
        and (repos["onnxruntime"] / "sentiment_lstm/1/model.onnx").exists()
    )
    assert [t.name for t in onnx.input] == ["token_ids"]
    torch = read_config(repos["pytorch"] / "sentiment_lstm" / "config.pbtxt")
    assert torch.backend == "pytorch" and (repos["pytorch"] / "sentiment_lstm/1/model.pt").exists()
    assert [t.name for t in torch.input] == ["token_ids__0"] and [t.name for t in torch.output] == [
        "logits__0"
    ]
    ensemble = read_config(repos["pytorch"] / "sentiment_lstm_ensemble" / "config.pbtxt")
    assert dict(ensemble.ensemble_scheduling.step[1].input_map) == {"token_ids__0": "token_ids"}


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_offline_check_catches_a_config_that_disagrees_with_the_artifact(repos, tmp_path, backend):
    model_dir = tmp_path / "digits_cnn"
    shutil.copytree(repos[backend] / "digits_cnn", model_dir)
    assert check_native(model_dir, SPEC["digits_cnn"]) == []
    config = read_config(model_dir / "config.pbtxt")
    config.output[0].dims[0] = 11
    write_config(config, model_dir)
    problems = check_native(model_dir, SPEC["digits_cnn"])
    assert problems and "dims" in problems[0]


def test_ensemble_wiring_is_checked():
    spec = serving_plan(SPEC["digits_cnn"], LAYOUT)
    signature = onnx_signature(LAYOUT.artifact_dir(SPEC["digits_cnn"]) / "model.onnx")
    pre, post, ensemble = ensemble_configs(spec, "python", signature)
    configs = {c.name: c for c in (pre, post, ensemble, model_config(spec, "python", signature))}
    assert check_ensemble(ensemble, configs) == []
    pre.output[0].data_type = pre.output[0].data_type + 1  # pre now produces a different dtype
    assert any("expects" in p for p in check_ensemble(ensemble, configs))
    del ensemble.ensemble_scheduling.step[2]  # nothing produces label / score
    assert any("never produced" in p for p in check_ensemble(ensemble, configs))


def test_rebuild_is_incremental(tmp_path):
    specs = [SPEC["tabular_mlp"]]
    assert build_repository(specs, LAYOUT, tmp_path) == {"tabular_mlp": True}
    assert build_repository(specs, LAYOUT, tmp_path) == {"tabular_mlp": False}
    assert build_repository(specs, LAYOUT, tmp_path, "onnxruntime") == {"tabular_mlp": True}


def test_an_encrypted_model_builds_for_the_python_backend_and_is_refused_by_native_ones(
    tmp_path, monkeypatch
):
    """The Python backend decrypts in memory (the graph is read decrypted too); NVIDIA's
    backends cannot, so the build names the Python backend instead of shipping ciphertext."""
    import os

    from handlers.encryption import KEY_ENV, encrypt_file, master_key

    key = tmp_path / "weights.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)  # a key others can read is refused
    monkeypatch.setenv(KEY_ENV, str(key))
    spec = SPEC["tabular_mlp"]
    layout = Layout.of(REPO, tmp_path / "out")
    shutil.copytree(LAYOUT.artifact_dir(spec), layout.artifact_dir(spec))
    for weights in layout.artifact_dir(spec).glob("model.*"):
        encrypt_file(weights, master_key(), spec.name, spec.version)
    build_repository([spec], layout, tmp_path / "python", "python")
    shipped = tmp_path / "python" / spec.name / "1" / "model.onnx"
    assert shipped.read_bytes().startswith(b"TORCHSHIP-AES256GCM")
    for backend in ("onnxruntime", "pytorch"):
        with pytest.raises(BuildError, match="cannot decrypt them; serve it on the Python backend"):
            build_repository([spec], layout, tmp_path / backend, backend)
