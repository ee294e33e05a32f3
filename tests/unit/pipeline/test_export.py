"""Export verification: every format equals eager PyTorch, and a wrong export is caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handlers.formats import FORMATS
from handlers.runners import load_runner, torch_runner
from models.tabular import TabularMLP
from scripts.pipeline.layout import Layout
from scripts.pipeline.export import export_model
from scripts.pipeline.verify import compare, verification_batch_sizes, verify_formats
from scripts.spec import BuildError, Tolerance, VerificationError, load_spec


def test_compare_reports_worst_index_and_both_values():
    expected = np.zeros((3, 4), dtype=np.float32)
    actual = expected.copy()
    actual[2, 1] = 0.5
    actual[0, 0] = 1e-7
    result = compare(actual, expected, Tolerance(atol=1e-5, rtol=0))
    assert not result.passed
    assert result.worst_index == [2, 1] and result.actual == 0.5 and result.expected == 0.0
    assert compare(expected, expected, Tolerance()).passed


def test_compare_integers_exactly_and_nan_fails():
    assert not compare(np.array([1, 2]), np.array([1, 3]), Tolerance(atol=10, rtol=10)).passed
    assert not compare(
        np.array([np.nan], np.float32), np.array([0.0], np.float32), Tolerance(atol=1e9)
    ).passed


def test_verification_never_uses_only_the_tracing_batch(tiny_spec):
    spec = load_spec(tiny_spec).models[0]
    assert verification_batch_sizes(spec) == [1, 3, 8]


def test_export_writes_verified_formats_and_golden_samples(tiny_spec):
    spec = load_spec(tiny_spec).models[0]
    root = tiny_spec.parent
    result = export_model(spec, Layout.of(root))
    out = root / "artifacts/tiny/1"
    report = json.loads((out / "verify.json").read_text())
    assert report["passed"] and result.report == report
    assert {(r["format"], r["batch_size"]) for r in report["results"]} == {
        (f, b) for f in ("torchscript", "onnx") for b in (1, 3, 8)
    }
    golden = np.load(out / "golden.npz")
    assert golden["input.features"].shape == (4, 30) and golden["output.probability"].shape == (
        4,
        1,
    )
    for fmt in ("torchscript", "onnx"):
        assert (out / FORMATS[fmt].file).exists()
    assert export_model(spec, Layout.of(root)).skipped  # nothing changed
    looser = spec.model_copy(update={"tolerance": Tolerance(atol=1e-3)})
    assert not export_model(looser, Layout.of(root)).skipped  # the spec changed


def test_deliberately_wrong_export_is_caught(tiny_spec, tmp_path):
    spec = load_spec(tiny_spec).models[0]
    torch.manual_seed(0)
    reference = TabularMLP(30, 16).eval()
    wrong = TabularMLP(30, 16).eval()
    wrong.load_state_dict(reference.state_dict())
    with torch.no_grad():
        wrong.layers[4].bias += 0.05  # a small drift, the kind a broken export introduces
    path = tmp_path / "wrong.pt"
    torch.jit.trace(wrong, torch.zeros(2, 30)).save(str(path))
    runners = {
        "torchscript": load_runner(
            "torchscript", path, spec.tensor_names, output_names=spec.output_names
        )
    }
    with pytest.raises(VerificationError) as caught:
        eager = torch_runner(reference, spec.tensor_names, spec.output_names)
        verify_formats(spec, eager, runners, tmp_path / "verify.json")
    message = caught.value.problems[0]
    assert message.startswith(
        "tiny: torchscript at batch 1 disagrees with eager PyTorch: "
        "output 'probability' index (0, 0): got "
    )
    assert "eager" in message and "> atol" in message
    assert len(caught.value.problems) == 3  # batch sizes 1, 3 and 8 all fail
    assert not json.loads((tmp_path / "verify.json").read_text())["passed"]


def test_spec_output_mismatch_is_a_clear_build_error(tiny_spec):
    text = tiny_spec.read_text().replace("shape: [-1, 1]", "shape: [-1, 2]")
    tiny_spec.write_text(text)
    with pytest.raises(
        BuildError, match=r"outputs\[0\] \(probability\): the model returns float32 \[2, 1\]"
    ):
        export_model(load_spec(tiny_spec).models[0], Layout.of(tiny_spec.parent))


def test_missing_checkpoint_at_export_names_the_fix(tiny_spec):
    spec = load_spec(tiny_spec).models[0]
    (tiny_spec.parent / "weights/tiny.pt").unlink()
    with pytest.raises(BuildError, match="not found; run `make train`"):
        export_model(spec, Layout.of(tiny_spec.parent))


@pytest.mark.parametrize("fmt, suffix", [("exported_program", ".pt2"), ("torchscript", ".pt")])
def test_an_already_exported_file_is_a_source_too(tiny_spec, fmt, suffix):
    """A user who only has an ExportedProgram (.pt2) or a TorchScript file (.pt) gets the same
    verified exports (TorchScript and ONNX) from it."""
    root = tiny_spec.parent
    base = load_spec(tiny_spec).models[0]
    first = base.model_copy(
        update={
            "export": base.export.model_copy(update={"formats": [fmt]}),
            "serving": base.serving.model_copy(update={"format": fmt}),
        }
    )
    export_model(first, Layout.of(root))
    given = root / f"given{suffix}"
    given.write_bytes((root / "artifacts/tiny/1" / FORMATS[fmt].file).read_bytes())
    lines = [
        line.replace("module: models.tabular:TabularMLP", f"exported: {given.name}")
        for line in tiny_spec.read_text().replace("name: tiny", "name: given").splitlines()
        if "checkpoint:" not in line and "kwargs:" not in line
    ]
    tiny_spec.write_text("\n".join(lines) + "\n")
    spec = load_spec(tiny_spec).models[0]
    assert spec.source.exported == given.relative_to(root)
    report = export_model(spec, Layout.of(root)).report
    assert report["passed"] and {r["format"] for r in report["results"]} == {"torchscript", "onnx"}


BRANCHY = """
  - name: branchy
    source: {module: "models.zoo.dynamic:BatchSizeBranch", checkpoint: branchy.pt}
    inputs:
      - {name: features, dtype: float32, shape: [-1, 30]}
    outputs:
      - {name: probability, dtype: float32, shape: [-1, 1]}
    task: {kind: raw}
    export: {formats: FORMATS}
"""


def branchy_spec(tmp_path, formats: str):
    from models.zoo.dynamic import BatchSizeBranch
    from tests.conftest import write_spec

    torch.save(BatchSizeBranch().state_dict(), tmp_path / "branchy.pt")
    return load_spec(write_spec(tmp_path, BRANCHY.replace("FORMATS", formats))).models[0]


def test_a_format_that_cannot_export_the_model_is_named_with_the_reason(tmp_path):
    spec = branchy_spec(tmp_path, "[torchscript, exported_program]")
    with pytest.raises(BuildError, match=r"^branchy: exported_program export failed: \w+"):
        export_model(spec, Layout.of(tmp_path))


def test_formats_auto_keeps_what_works_and_says_why_the_rest_was_left_out(tmp_path):
    from scripts.pipeline.paths import exported_formats

    spec = branchy_spec(tmp_path, "auto")
    result = export_model(spec, Layout.of(tmp_path))
    exported, skipped = exported_formats(spec, Layout.of(tmp_path)), result.report["skipped"]
    assert "torchscript" in exported and {"exported_program", "aoti"} <= set(skipped)
    assert all(
        reason.startswith(f"branchy: {fmt} export failed: ") for fmt, reason in skipped.items()
    )
    on_disk = sorted(p.name for p in Layout.of(tmp_path).artifact_dir(spec).glob("model.*"))
    assert on_disk == sorted(FORMATS[f].file for f in exported)
    assert (
        json.loads((Layout.of(tmp_path).artifact_dir(spec) / "verify.json").read_text())["skipped"]
        == skipped
    )


MASKED = """
  - name: masked
    source: {module: "models.zoo.dynamic:MaskedMean", checkpoint: masked.pt}
    inputs:
      - {name: ids, dtype: int64, shape: [-1, -1], range: [0, 49]}
      - {name: mask, dtype: int64, shape: [-1, -1], range: [0, 1]}
    outputs:
      - {name: pooled, dtype: float32, shape: [-1, 8]}
    task: {kind: raw}
    batching: {max_batch_size: 4, pad: {value: 0, mask: mask}}
    serving: {format: exported_program}
    export: {formats: [exported_program, onnx]}
"""


def test_the_mask_shares_its_dynamic_length_with_the_inputs_it_masks(tmp_path):
    """With a named Dim per input torch.export failed: 'Constraints violated (mask_1, ids_1)'."""
    from models.zoo.dynamic import MaskedMean
    from tests.conftest import write_spec

    torch.save(MaskedMean().state_dict(), tmp_path / "masked.pt")
    spec = load_spec(write_spec(tmp_path, MASKED)).models[0]
    assert export_model(spec, Layout.of(tmp_path)).report["passed"]


def test_a_padding_mask_is_drawn_as_padding_makes_it():
    """Random 0/1 masks can mask a whole row, where eager and ONNX disagree on nonsense."""
    import numpy as np

    from scripts.pipeline.verify import random_inputs
    from tests.conftest import ZOO_SPEC

    spec = next(m for m in load_spec(ZOO_SPEC).models if m.name == "zoo_tiny_bert")
    mask = random_inputs(spec, 64, np.random.default_rng(0))["attention_mask"]
    assert mask[:, 0].all() and (np.diff(mask, axis=1) <= 0).all() and mask.dtype == np.int64


def test_a_model_without_a_batch_axis_is_exported_and_verified_at_its_own_shape(tiny_spec):
    """max_batch_size 0: the spec's shape as it is ([30], no batch axis) for tracing, for
    verification and for the golden sample."""
    text = tiny_spec.read_text()
    for old, new in {
        "shape: [-1, 30]": "shape: [30]",
        "shape: [-1, 1]": "shape: [1]",
        "kind: classification": "kind: regression",
        "batching: {max_batch_size: 8}": "batching: {max_batch_size: 0}",
    }.items():
        text = text.replace(old, new)
    tiny_spec.write_text(
        text.replace("      labels: labels.txt\n      output: probabilities\n", "")
    )
    spec = load_spec(tiny_spec).models[0]
    report = export_model(spec, Layout.of(tiny_spec.parent)).report
    assert report["passed"] and {r["format"] for r in report["results"]} == {"torchscript", "onnx"}
    golden = np.load(tiny_spec.parent / "artifacts/tiny/1/golden.npz")
    assert golden["input.features"].shape == (30,) and golden["output.probability"].shape == (1,)
