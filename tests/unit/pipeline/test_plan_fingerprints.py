"""The serving plan's inputs are the one source of every runtime artifact's fingerprint:
editing one model's labels rebuilds exactly that model's .mar and Triton models."""

from __future__ import annotations

import zipfile

import pytest
import torch

from handlers.plan import ServingPlan
from scripts.pipeline.layout import Layout
from scripts.pipeline.export import export_model
from scripts.runtimes.protocols import BuildOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.spec import load_spec
from tests.conftest import TINY_ENTRY, write_spec


@pytest.fixture
def two_models(tmp_path):
    """Two tiny classifiers, each with its own labels file, exported."""
    from models.tabular import TabularMLP

    (tmp_path / "weights").mkdir()
    entries = ""
    for name in ("first", "second"):
        torch.manual_seed(0)
        torch.save(TabularMLP(30, 16).state_dict(), tmp_path / "weights" / f"{name}.pt")
        (tmp_path / f"{name}.txt").write_text("malignant\nbenign\n")
        entries += TINY_ENTRY.format(name=name, formats="onnx").replace(
            "labels: labels.txt", f"labels: {name}.txt"
        )
    specs = load_spec(
        write_spec(
            tmp_path, entries.replace("    export:", "    serving: {format: onnx}\n    export:")
        )
    ).models
    for spec in specs:
        export_model(spec, Layout.of(tmp_path))
    return specs, tmp_path


def build_all(specs, root) -> dict[str, dict[str, str]]:
    layout = Layout.of(root)
    return {
        name: {
            row.model: row.status for row in runtime.artifacts.build(specs, layout, BuildOptions())
        }
        for name, runtime in RUNTIMES.items()
    }


def test_editing_one_labels_file_rebuilds_that_model_only(two_models):
    specs, root = two_models
    first = build_all(specs, root)
    assert all(
        status != "up to date" for statuses in first.values() for status in statuses.values()
    )
    assert all(
        status == "up to date"
        for statuses in build_all(specs, root).values()
        for status in statuses.values()
    )

    (root / "first.txt").write_text("sick\nwell\n")
    again = build_all(specs, root)
    assert again["torchserve"] == {"first": "archived", "second": "up to date"}
    assert again["triton"] == {"first": "written (python)", "second": "up to date"}

    with zipfile.ZipFile(Layout.of(root).model_store / "first.mar") as mar:
        assert ServingPlan.model_validate_json(mar.read("serving_plan.json")).task.labels == [
            "sick",
            "well",
        ]
    assert ServingPlan.load(Layout.of(root).triton_repo / "first" / "1").task.labels == [
        "sick",
        "well",
    ]


def test_a_fingerprint_is_over_contents_not_where_the_files_are(tmp_path):
    from scripts.pipeline.fingerprint import fingerprint

    for folder in ("here", "moved/elsewhere"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model.pt").write_bytes(b"weights")
    here, moved = tmp_path / "here" / "model.pt", tmp_path / "moved" / "elsewhere" / "model.pt"
    assert fingerprint({"a": 1}, [here]) == fingerprint({"a": 1}, [moved])
    moved.write_bytes(b"other weights")
    assert fingerprint({"a": 1}, [here]) != fingerprint({"a": 1}, [moved])
