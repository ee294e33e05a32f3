"""The KServe trees and manifests as `make kserve` writes them, before any server starts."""

from __future__ import annotations

import json

import pytest
import yaml

from scripts.kserve.bundle import make_bundles
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton.configs import read_config
from tests.conftest import LAYOUT
from tests.integration.kserve.golden import SERVED, SPEC, SPECFILE

pytestmark = pytest.mark.integration


def test_torchserve_tree_is_what_kserve_expects(bundles):
    tree = bundles[0]["torchserve"].tree
    assert sorted(p.name for p in (tree / "model-store").iterdir()) == sorted(
        f"{n}.mar" for n in SERVED
    )
    settings = dict(
        line.split("=", 1)
        for line in (tree / "config" / "config.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["model_store"] == "/mnt/models/model-store"
    assert settings["inference_address"] == "http://127.0.0.1:8085"
    assert settings["disable_token_authorization"] == "true"
    assert (
        settings["metrics_address"] == "http://0.0.0.0:8082"
        and settings["enable_envvars_config"] == "false"
    )
    assert "service_envelope" not in settings and settings["enable_model_api"] == "false"
    snapshot = json.loads(settings["model_snapshot"])
    assert sorted(snapshot["models"]) == SERVED and snapshot["modelCount"] == len(SERVED)


def test_native_triton_tree_has_only_native_models_and_checks_offline(tmp_path):
    """The default bundle (onnxruntime, NVIDIA's stock image): tensor models only, each config
    checked against its ONNX file while it is written (a mismatch raises)."""
    made, _ = make_bundles(SPECFILE.models, LAYOUT, [RUNTIMES["triton"]], SPECFILE.kserve, tmp_path)
    configs = [read_config(p) for p in sorted(made[0].tree.glob("*/config.pbtxt"))]
    assert sorted(c.name for c in configs) == sorted(SPEC)
    assert {c.backend for c in configs} == {"onnxruntime"}
    assert all(
        (made[0].tree / c.name / str(SPEC[c.name].version) / "model.onnx").exists() for c in configs
    )


def test_manifests_point_at_each_bundle(bundles):
    made, manifests = bundles
    assert len(manifests) == 8  # per runtime: the service, canary, rollback and a PodMonitor
    assert {p.name for p in manifests if p.name.endswith(".podmonitor.yml")} == {
        f"torchship-{runtime}.podmonitor.yml" for runtime in made
    }
    for runtime, bundle in made.items():
        isvc, canary, rollback = [
            yaml.safe_load((manifests[0].parent / f"torchship-{runtime}{stage}.yaml").read_text())
            for stage in ("", "-canary", "-rollback")
        ]
        model = isvc["spec"]["predictor"]["model"]
        assert (
            model["modelFormat"]["name"] == bundle.model_format
            and model["runtimeVersion"] == bundle.runtime_version
        )
        assert model["storageUri"].startswith(f"{SPECFILE.kserve.storage_uri}/{runtime}/")
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
        assert canary["spec"]["predictor"]["canaryTrafficPercent"] == SPECFILE.kserve.canary_percent
        assert rollback["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert (
            canary["spec"]["predictor"]["model"] == rollback["spec"]["predictor"]["model"] == model
        )
