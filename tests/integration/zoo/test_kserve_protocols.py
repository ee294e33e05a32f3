"""KServe's v2 protocol on models we did not write: every zoo entry's golden inputs sent as v2
tensors to TorchServe's /v2/models/<m>/infer (what KServe's wrapper forwards) answer what the
handler's own route answers (held to eager, or to the int8 model, by `make verify`), eager's
outputs for fp32 models, with each output's datatype as the spec declares it (fp16, bool, int32)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from handlers.preprocessing.dtypes import triton_datatype
from scripts.pipeline.verify import compare
from scripts.kserve.bundle import make_bundles
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton.configs import read_config
from scripts.runtimes.triton.repository import build_repository
from scripts.spec import BuildError, load_spec
from scripts.spec.cluster import KServeSpec
from tests.conftest import LAYOUT, ZOO_SPEC

ZOO = {m.name: m for m in load_spec(ZOO_SPEC).models if m.task.generation is None}  # tensors


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ZOO))
def test_v2_tensors_give_eager_outputs(name, zoo_servers):
    spec, server = ZOO[name], zoo_servers["torchserve"]
    with np.load(LAYOUT.artifact_dir(spec) / "golden.npz") as saved:
        golden = dict(saved)
    rows = None if spec.batching.max_batch_size == 0 else 1  # never-batched: the golden call whole
    body = {
        "inputs": [
            {
                "name": t.name,
                "shape": list(golden[f"input.{t.name}"][:rows].shape),
                "datatype": triton_datatype(t.dtype),
                "data": golden[f"input.{t.name}"][:rows].reshape(-1).tolist(),
            }
            for t in spec.inputs
        ]
    }
    token = {"Authorization": f"Bearer {server.key('inference')}"}
    reply = requests.post(
        f"{server.inference_url}/v2/models/{name}/infer", json=body, timeout=60, headers=token
    )
    assert reply.status_code == 200, reply.text[:500]
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    own = requests.post(
        f"{server.inference_url}/predictions/{name}",
        timeout=60,
        headers=token,
        json={"tensors": {t.name: golden[f"input.{t.name}"][:rows].tolist() for t in spec.inputs}},
    ).json()
    own = own if isinstance(own, list) else [own]
    int8 = spec.for_runtime("torchserve").serving.format == "onnx_int8"
    for t in spec.outputs:
        expected = golden[f"output.{t.name}"][:rows]
        assert outputs[t.name]["datatype"] == triton_datatype(t.dtype)
        actual = np.array(outputs[t.name]["data"], dtype=expected.dtype).reshape(
            outputs[t.name]["shape"]
        )
        routed = (
            own[0]["outputs"][t.name]
            if spec.batching.max_batch_size == 0
            else [a["outputs"][t.name] for a in own]
        )
        np.testing.assert_array_equal(actual, np.array(routed, dtype=expected.dtype))
        result = compare(actual, expected, spec.tolerance)
        assert result.passed or int8, (t.name, result)


@pytest.mark.integration
def test_kserve_triton_bundle_of_the_zoo_is_native_and_checked_offline(zoo_models, tmp_path):
    """The default KServe Triton tree (onnxruntime) for models we did not write: every zoo
    model, each config checked against its ONNX file as it is written (a per-sample scalar's
    dims [1] + reshape to [] included). libtorch's backend refuses a module returning a dict,
    naming it, instead of failing in NVIDIA's container."""
    made, _ = make_bundles(
        zoo_models, LAYOUT, [RUNTIMES["triton"]], KServeSpec(), tmp_path / "kserve"
    )
    configs = [read_config(p) for p in made[0].tree.glob("*/config.pbtxt")]
    assert sorted(c.name for c in configs) == sorted(ZOO) and {c.backend for c in configs} == {
        "onnxruntime"
    }
    with pytest.raises(
        BuildError, match="zoo_mixed_dtypes: the module returns dict; libtorch's backend needs"
    ):
        build_repository([ZOO["zoo_mixed_dtypes"]], LAYOUT, tmp_path / "pytorch", "pytorch")
