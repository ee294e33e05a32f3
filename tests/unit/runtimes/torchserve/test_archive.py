"""The .mar archives: what they hold, and refusal of one whose contents do not match its
manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from handlers.plan import ServingPlan
from scripts.pipeline.layout import Layout
from scripts.runtimes.torchserve.archive import MANIFEST, verify_archive
from scripts.spec import load_spec
from tests.conftest import TENSOR_EXAMPLES, REPO

# These tests read the example models' artifacts.
pytestmark = pytest.mark.usefixtures("built_examples")

SPEC = load_spec(REPO / "models.yaml")
LAYOUT = Layout.of(REPO)


@pytest.mark.parametrize("spec", TENSOR_EXAMPLES, ids=lambda m: m.name)
def test_archive_contents_follow_the_spec(spec):
    spec = spec.for_runtime("torchserve")  # what TorchServe is given: per_runtime applied
    mar = LAYOUT.model_store / f"{spec.name}.mar"
    assert verify_archive(mar) == []
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        settings = yaml.safe_load(archive.read("model-config.yaml"))
        plan = ServingPlan.model_validate_json(archive.read("serving_plan.json"))
        manifest = json.loads(archive.read(MANIFEST))
        archiver = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    assert {
        "handlers/preprocessing/pipeline.py",
        "handlers/preprocessing/processing.py",
        "torchserve_handler.py",
        plan.artifact,
    } <= names
    assert set(manifest) == names - {"MAR-INF/MANIFEST.json", MANIFEST}
    assert settings["batchSize"] == spec.batching.max_batch_size
    assert (
        settings["minWorkers"] == spec.serving.workers.min
        and settings["maxWorkers"] == spec.serving.workers.max
    )
    assert archiver["model"]["modelVersion"] == str(spec.version)
    assert plan.task.labels == LAYOUT.source(spec.task.labels).read_text().split()


def tampered_copy(tmp_path, change):
    original = LAYOUT.model_store / "tabular_mlp.mar"
    store = Layout.of(tmp_path).model_store
    store.mkdir()
    with zipfile.ZipFile(original) as good, zipfile.ZipFile(store / original.name, "w") as bad:
        for item in good.infolist():
            content = change(item.filename, good.read(item))
            if content is not None:
                bad.writestr(item, content)
    return store / original.name


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            lambda name, data: (
                data + b"\n# injected" if name == "handlers/preprocessing/pipeline.py" else data
            ),
            "handlers/preprocessing/pipeline.py: SHA-256 differs from the manifest",
        ),
        (
            lambda name, data: None if name == "serving_plan.json" else data,
            "serving_plan.json: listed in the manifest but missing",
        ),
    ],
)
def test_tampered_archive_is_refused(tmp_path, change, problem):
    assert any(problem in p for p in verify_archive(tampered_copy(tmp_path, change)))


def test_verify_artifacts_step_exits_non_zero_on_tampering(tmp_path):
    shutil.copy(REPO / "models.yaml", tmp_path / "models.yaml")
    for folder in ("models", "checkpoints"):
        (tmp_path / folder).symlink_to(REPO / folder)
    tampered_copy(
        tmp_path,
        lambda name, data: (
            data.replace(b"standardize", b"standardise") if name == "serving_plan.json" else data
        ),
    )
    for name in ("digits_cnn", "sentiment_lstm"):
        shutil.copy(LAYOUT.model_store / f"{name}.mar", Layout.of(tmp_path).model_store)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts",
            "verify-artifacts",
            "--spec",
            str(tmp_path / "models.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1
    assert "tabular_mlp.mar: REFUSED" in result.stdout and "digits_cnn.mar: intact" in result.stdout
    assert "serving_plan.json: SHA-256 differs" in result.stderr


def test_an_archive_the_handler_cannot_load_is_refused_at_archive_time(tiny_spec, tmp_path):
    from scripts.pipeline.export import export_model
    from scripts.runtimes.torchserve.archive import archive_model
    from scripts.spec import BuildError

    spec = load_spec(tiny_spec).models[0]
    layout = Layout.of(tmp_path)
    export_model(spec, layout)
    (layout.artifact_dir(spec) / "model.torchscript.pt").write_bytes(b"not a model")
    with pytest.raises(
        BuildError, match=r"tiny.mar: the handler cannot load it: .*make export MODEL=tiny"
    ):
        archive_model(spec, layout, tmp_path / "store")
    assert not (tmp_path / "store" / "tiny.mar").exists()
