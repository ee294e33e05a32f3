"""The spec's batching in each runtime's own terms, on real artifacts: a value a runtime cannot
represent exactly is rounded with a warning, never silently changed."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
import yaml

from scripts.pipeline.export import export_model
from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.protocols import BuildOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.runtime import TORCHSERVE
from scripts.runtimes.triton.configs import read_config
from scripts.runtimes.triton.runtime import TRITON
from scripts.spec import load_spec
from scripts.spec.overrides import RuntimeSettings
from tests.conftest import REPO


@pytest.fixture
def half_ms_spec(tiny_spec):
    """The tiny model with a 0.5 ms queue delay, exported; with its layout."""
    text = tiny_spec.read_text().replace(
        "batching: {max_batch_size: 8}", "batching: {max_batch_size: 8, max_queue_delay_ms: 0.5}"
    )
    tiny_spec.write_text(text)
    spec = load_spec(tiny_spec).models[0]
    layout = Layout.of(tiny_spec.parent)
    export_model(spec, layout)
    return spec, layout


def test_half_a_millisecond_is_500_us_on_triton_without_a_warning(half_ms_spec):
    spec, layout = half_ms_spec
    (row,) = TRITON.artifacts.build([spec], layout, BuildOptions())
    config = read_config(layout.triton_repo / spec.name / "config.pbtxt")
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert row.warnings == []


def test_half_a_millisecond_is_rounded_up_on_torchserve_with_a_warning(half_ms_spec):
    spec, layout = half_ms_spec
    (row,) = TORCHSERVE.artifacts.build([spec], layout, BuildOptions())
    with zipfile.ZipFile(layout.model_store / f"{spec.name}.mar") as mar:
        settings = yaml.safe_load(mar.read("model-config.yaml"))
    assert settings["maxBatchDelay"] == 1  # not 0: round(0.5) would be 0 in Python
    assert len(row.warnings) == 1 and "0.5 is served as 1 ms" in row.warnings[0]


def test_every_runtime_translates_the_same_plan(half_ms_spec):
    spec, layout = half_ms_spec
    plan = serving_plan(spec, layout)
    translated = {name: runtime.artifacts.translate(plan) for name, runtime in RUNTIMES.items()}
    assert translated[TORCHSERVE.name].settings["batchSize"] == 8
    assert translated[TRITON.name].settings["max_batch_size"] == 8


def test_spec_check_prints_the_warning(half_ms_spec):
    _, layout = half_ms_spec
    done = subprocess.run(
        [sys.executable, "-m", "scripts", "check", "--spec", str(layout.root / "models.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "TorchServe" in done.stdout and "0.5 is served as 1 ms" in done.stdout


def test_no_queue_delay_is_one_millisecond_on_torchserve_whose_zero_means_100(half_ms_spec):
    spec, layout = half_ms_spec
    plan = serving_plan(spec, layout)
    plan = plan.model_copy(
        update={"batching": plan.batching.model_copy(update={"max_queue_delay_ms": 0})}
    )
    translated = TORCHSERVE.artifacts.translate(plan)
    assert translated.settings["maxBatchDelay"] == 1
    assert "0 means its default, 100 ms" in translated.warnings[0]
    assert TRITON.artifacts.translate(plan).settings["max_queue_delay_microseconds"] == 0


def test_without_dynamic_batching_each_request_reaches_the_model_as_it_came(half_ms_spec):
    """Triton gets no dynamic_batching block (clients may still send batches of up to
    max_batch_size rows); TorchServe hands its handler one request at a time."""
    spec, layout = half_ms_spec
    spec = spec.model_copy(update={"batching": spec.batching.model_copy(update={"dynamic": False})})
    (row,) = TRITON.artifacts.build([spec], layout, BuildOptions())
    config = read_config(layout.triton_repo / spec.name / "config.pbtxt")
    assert not config.HasField("dynamic_batching") and config.max_batch_size == 8
    assert TORCHSERVE.artifacts.translate(serving_plan(spec, layout)).settings["batchSize"] == 1


def test_per_runtime_turns_dynamic_batching_off_for_one_runtime_only(half_ms_spec):
    spec, layout = half_ms_spec
    spec = spec.model_copy(update={"per_runtime": {"triton": RuntimeSettings(dynamic=False)}})
    triton = TRITON.artifacts.translate(serving_plan(spec.for_runtime("triton"), layout))
    torchserve = TORCHSERVE.artifacts.translate(
        serving_plan(spec.for_runtime("torchserve"), layout)
    )
    assert "max_queue_delay_microseconds" not in triton.settings
    assert torchserve.settings["batchSize"] == 8
