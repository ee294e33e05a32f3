"""The InferenceService pods are locked down (non-root, read-only root filesystem with emptyDirs
where the runtime writes, no privilege escalation, no capabilities, no service-account token),
and the weights' encryption key reaches the handlers as a read-only file from the service's
Secret, which handlers/encryption.py accepts."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from handlers.encryption import KEY_ENV, master_key
from scripts.kserve.bundle import manifest_inputs, run_sdk, writable_dirs
from scripts.kserve.storage import KServeBundle
from scripts.runtimes.triton import kserve as triton_kserve
from scripts.spec.cluster import KServeSpec

RUNTIMES = ("torchserve", "triton")


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, dict]:
    tree = tmp_path_factory.mktemp("tree")
    (tree / "model.onnx").write_bytes(b"bytes")
    settings = KServeSpec(service="shop", storage_uri="gs://bucket/models/")
    bundles = [
        KServeBundle("torchserve", tree, "pytorch", "0.12.0", "v2", ["a"], 8082),
        KServeBundle(
            "triton",
            tree,
            "triton",
            triton_kserve.RUNTIME_VERSION,
            "v2",
            ["a"],
            triton_kserve.METRICS_PORT,
            tuple(triton_kserve.hardening_args()),
            (triton_kserve.ADMIN_KEY_ENV,),
        ),
    ]
    out = tmp_path_factory.mktemp("manifests")
    run_sdk("write", out, json.dumps([manifest_inputs(b, settings) for b in bundles]))
    assert run_sdk("check", out).strip() == "ok"  # the CRD subset and the SDK's typed model
    return {
        f"{runtime}{stage}": yaml.safe_load((out / f"shop-{runtime}{stage}.yaml").read_text())
        for runtime in RUNTIMES
        for stage in ("", "-canary", "-rollback")
    }


def test_every_pod_is_non_root_read_only_and_without_a_token(manifests):
    for name, isvc in manifests.items():
        predictor = isvc["spec"]["predictor"]
        assert predictor["automountServiceAccountToken"] is False, name
        pod = predictor["securityContext"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] > 0 and pod["fsGroup"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert predictor["model"]["securityContext"] == {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }, name


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_folder_the_runtime_writes_is_an_empty_dir(manifests, runtime):
    predictor = manifests[runtime]["spec"]["predictor"]
    empty = {v["name"] for v in predictor["volumes"] if "emptyDir" in v}
    mounted = {m["mountPath"]: m["name"] for m in predictor["model"]["volumeMounts"]}
    assert "/tmp" in writable_dirs(runtime)
    for folder in writable_dirs(runtime):
        assert mounted[folder] in empty, folder


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_encryption_key_is_a_read_only_file_from_the_secret(manifests, runtime):
    predictor = manifests[runtime]["spec"]["predictor"]
    (volume,) = [v for v in predictor["volumes"] if "secret" in v]
    assert volume["secret"] == {
        "secretName": f"shop-{runtime}-secrets",
        "items": [{"key": "weights.key", "path": "weights.key"}],
        "defaultMode": 0o440,
        "optional": True,  # plaintext artifacts need no key
    }
    (mount,) = [m for m in predictor["model"]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = {e["name"]: e for e in predictor["model"]["env"]}
    assert env[KEY_ENV] == {"name": KEY_ENV, "value": f"{mount['mountPath']}/weights.key"}
    assert not any("weights" in str(e.get("valueFrom", "")) for e in env.values())  # never a value


def test_the_mounted_secret_passes_the_key_checks(tmp_path, monkeypatch):
    """As kubelet writes it: owned by root, the pod's fsGroup, 0440; read by uid 1000."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to root and another group")
    key = tmp_path / "weights.key"
    key.write_text(os.urandom(32).hex())
    os.chown(key, 0, 1000)
    key.chmod(0o440)
    monkeypatch.setenv(KEY_ENV, str(key))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    monkeypatch.setattr(os, "getgroups", lambda: [1000])
    assert len(master_key()) == 32


def test_a_name_with_a_trailing_newline_is_refused(tmp_path_factory, manifests):
    """jsonschema searches patterns with Python's re, where `$` matches before a final newline:
    the schemas' patterns end with a lookahead that nothing follows instead."""
    out = tmp_path_factory.mktemp("broken")
    document = manifests["triton"]
    document = {**document, "metadata": {**document["metadata"], "name": "shop-triton\n"}}
    (out / "broken.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(Exception, match=r"metadata.name: 'shop-triton\\n' does not match"):
        run_sdk("check", out)
