"""The InferenceService manifests, written by the kserve SDK's typed models (in .venv-kserve) and
checked offline: against the CRD-subset schema, and round-tripped through the typed model
(a field it does not know is reported). No cluster, no network."""

from __future__ import annotations

import json

import pytest
import yaml

from scripts.kserve.bundle import manifest_inputs, run_sdk
from scripts.kserve.storage import KServeBundle
from scripts.runtimes.triton import kserve as triton_kserve
from scripts.spec.cluster import KServeSpec


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree")
    (tree / "model.onnx").write_bytes(b"bytes")
    settings = KServeSpec(
        service="shop",
        namespace="ml",
        min_replicas=2,
        max_replicas=5,
        cpu="2",
        memory="4Gi",
        gpus=1,
        canary_percent=20,
        storage_uri="gs://bucket/models/",
    )
    bundle = KServeBundle(
        "triton",
        tree,
        "triton",
        triton_kserve.RUNTIME_VERSION,
        "v2",
        ["a", "b"],
        triton_kserve.METRICS_PORT,
        tuple(triton_kserve.hardening_args()),
        (triton_kserve.ADMIN_KEY_ENV,),
    )
    out = tmp_path_factory.mktemp("manifests")
    run_sdk("write", out, json.dumps([manifest_inputs(bundle, settings)]))
    return out


def test_spec_fields_reach_the_manifest(written):
    isvc = yaml.safe_load((written / "shop-triton.yaml").read_text())
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["name"] == "shop-triton" and isvc["metadata"]["namespace"] == "ml"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)
    assert predictor["model"]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "4Gi",
        "nvidia.com/gpu": "1",
    }
    assert predictor["model"]["storageUri"].startswith("gs://bucket/models/triton/")
    assert (
        predictor["model"]["protocolVersion"] == "v2"
        and predictor["model"]["runtimeVersion"] == "25.10-py3"
    )
    canary = yaml.safe_load((written / "shop-triton-canary.yaml").read_text())
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert run_sdk("check", written).strip() == "ok"


@pytest.mark.parametrize(
    "path, value, message",
    [
        (
            ("spec", "predictor", "canaryTrafficPercent"),
            150,
            "150 is greater than the maximum of 100",
        ),
        (
            ("spec", "predictor", "model", "storageURI"),
            "s3://x",
            "storageURI: not a field of the InferenceService",
        ),
        (("metadata", "name"), "Shop_Triton", "does not match"),
        (("spec", "predictor", "model", "resources", "limits", "memory"), "lots", "does not match"),
    ],
)
def test_check_names_what_is_wrong(written, tmp_path, path, value, message):
    document = yaml.safe_load((written / "shop-triton.yaml").read_text())
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(Exception) as failure:
        run_sdk("check", tmp_path)
    assert message in str(failure.value)


def test_missing_storage_uri_is_refused(written, tmp_path):
    document = yaml.safe_load((written / "shop-triton.yaml").read_text())
    del document["spec"]["predictor"]["model"]["storageUri"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(Exception, match="'storageUri' is a required property"):
        run_sdk("check", tmp_path)


def test_pods_are_scraped_and_every_triton_admin_api_needs_the_key_from_a_secret(written):
    """KServe's scrape annotations and a PodMonitor on the runtime's metrics port; Triton's
    arguments put every admin API behind the key, which comes from a Secret (never written)."""
    isvc = yaml.safe_load((written / "shop-triton.yaml").read_text())
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["prometheus.kserve.io/port"] == "8002"
    model = isvc["spec"]["predictor"]["model"]
    restricted = (
        "model-repository,shared-memory,logging,trace,statistics:admin-key=$(TRITON_ADMIN_KEY)"
    )
    assert f"--http-restricted-api={restricted}" in model["args"]
    assert f"--grpc-restricted-protocol={restricted}" in model["args"]
    assert model["env"][0] == {
        "name": "TRITON_ADMIN_KEY",
        "valueFrom": {"secretKeyRef": {"name": "shop-triton-secrets", "key": "triton_admin_key"}},
    }
    monitor = yaml.safe_load((written / "shop-triton.podmonitor.yml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "shop-triton"
    }
    assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8002


def test_a_broken_pod_monitor_is_named(written, tmp_path):
    monitor = yaml.safe_load((written / "shop-triton.podmonitor.yml").read_text())
    monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] = 70000
    (tmp_path / "broken.podmonitor.yml").write_text(yaml.safe_dump(monitor))
    with pytest.raises(Exception, match="70000 is greater than the maximum of 65535"):
        run_sdk("check", tmp_path)
