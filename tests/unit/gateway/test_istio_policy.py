"""The spec's access: as Istio's policy for each KServe service: each client allowed the paths of
the models its patterns match (and only those), health and the metrics scrape open, and both
documents valid against the CRD subset."""

from __future__ import annotations

from pathlib import Path

import yaml

from scripts.kserve import istio
from scripts.kserve.storage import KServeBundle
from scripts.spec.access import AccessSpec

BUNDLE = KServeBundle(
    runtime="triton",
    tree=Path("kserve/triton"),
    model_format="triton",
    runtime_version="24.10-py3",
    protocol="v2",
    models=["digits_cnn", "digits_cnn_ensemble", "review_gpt", "sentiment_lstm"],
    metrics_port=8002,
)
ACCESS = AccessSpec.model_validate(
    {
        "clients": [
            {"name": "digits_app", "key_sha256": "a" * 64, "models": ["digits_*"]},
            {"name": "writer", "key_sha256": "b" * 64, "models": ["review_gpt:2"]},
            {"name": "nobody_here", "key_sha256": "c" * 64, "models": ["tabular_*"]},
        ],
        "kserve": {"issuer": "https://id.example", "jwks_uri": "https://id.example/jwks"},
    }
)


def test_each_client_gets_its_models_paths_only(tmp_path):
    (path,) = istio.write([BUNDLE], "torchship", "ml", ACCESS, tmp_path)
    assert path.name == "torchship-triton.access.yaml"
    authn, authz = yaml.safe_load_all(path.read_text())
    assert authn["spec"]["jwtRules"][0]["issuer"] == "https://id.example"
    assert authz["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "torchship-triton"
    }
    rules = authz["spec"]["rules"]
    by_client = {r["from"][0]["source"]["requestPrincipals"][0]: r for r in rules if "from" in r}
    digits = by_client["https://id.example/digits_app"]["to"][0]["operation"]["paths"]
    assert "/v2/models/digits_cnn/*" in digits and "/v2/models/digits_cnn_ensemble/*" in digits
    assert not any("review_gpt" in p or "sentiment" in p for p in digits)
    writer = by_client["https://id.example/writer"]["to"][0]["operation"]["paths"]
    assert writer == ["/v2/models/review_gpt/versions/2/*", "/predictions/review_gpt/2"]
    assert "https://id.example/nobody_here" not in by_client  # matches nothing served here
    assert {"to": [{"operation": {"ports": ["8002"]}}]} in rules
    assert istio.problems(path) == []


def test_the_schema_refuses_what_istio_would(tmp_path):
    authn, authz = istio.manifests(BUNDLE, "torchship-triton", None, ACCESS)
    authz["spec"]["rules"][0]["to"][0]["operation"]["paths"] = ["/v2/models/*/infer"]
    authn["spec"]["jwtRules"][0]["jwksUri"] = "file:///keys"
    path = tmp_path / "bad.access.yaml"
    path.write_text(yaml.safe_dump_all([authn, authz]))
    found = istio.problems(path)
    assert any("RequestAuthentication" in p and "jwksUri" in p for p in found)
    assert any("AuthorizationPolicy" in p and "paths" in p for p in found)
