"""The spec's batching in each runtime's own terms, on real artifacts: a value a runtime cannot
represent exactly is rounded with a warning, never silently changed."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
import yaml

from scripts.pipeline.export import export_model
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.triton.configs import read_config
from scripts.spec import load_spec
from tests.conftest import REPO


@pytest.fixture
def half_ms_spec(tiny_spec):
    """The tiny model with a 0.5 ms queue delay, exported."""
    text = tiny_spec.read_text().replace("batching: {max_batch_size: 8}",
                                         "batching: {max_batch_size: 8, max_queue_delay_ms: 0.5}")
    tiny_spec.write_text(text)
    spec = load_spec(tiny_spec).models[0]
    export_model(spec, tiny_spec.parent)
    return spec, tiny_spec.parent


def test_half_a_millisecond_is_500_us_on_triton_without_a_warning(half_ms_spec):
    spec, root = half_ms_spec
    (row,) = RUNTIMES["triton"].build([spec], root)
    config = read_config(root / "triton_repo" / spec.name / "config.pbtxt")
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert row.warnings == []


def test_half_a_millisecond_is_rounded_up_on_torchserve_with_a_warning(half_ms_spec):
    spec, root = half_ms_spec
    (row,) = RUNTIMES["torchserve"].build([spec], root)
    with zipfile.ZipFile(root / "model_store" / f"{spec.name}.mar") as mar:
        settings = yaml.safe_load(mar.read("model-config.yaml"))
    assert settings["maxBatchDelay"] == 1          # not 0: round(0.5) would be 0 in Python
    assert len(row.warnings) == 1 and "0.5 is served as 1 ms" in row.warnings[0]


def test_every_runtime_translates_the_same_plan(half_ms_spec):
    spec, root = half_ms_spec
    plan = serving_plan(spec, root)
    translated = {name: runtime.translate(plan) for name, runtime in RUNTIMES.items()}
    assert translated["torchserve"].settings["batchSize"] == translated["triton"].settings["max_batch_size"] == 8


def test_spec_check_prints_the_warning(half_ms_spec):
    _, root = half_ms_spec
    done = subprocess.run([sys.executable, "-m", "scripts", "check", "--spec", str(root / "models.yaml")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "TorchServe" in done.stdout and "0.5 is served as 1 ms" in done.stdout
