"""models.yaml validation: the real spec loads, and every class of mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.spec import SpecError, load_spec
from tests.conftest import REPO, TINY_ENTRY, write_spec


def problems_for(tmp_path: Path, entries: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, entries))
    return caught.value.problems


def tiny(**replace: str) -> str:
    entry = TINY_ENTRY.format(name=replace.pop("name", "tiny"), formats="torchscript, onnx")
    for old, new in replace.items():
        assert old in entry, old
        entry = entry.replace(old, new)
    return entry


def test_project_spec_loads():
    spec = load_spec(REPO / "models.yaml")
    assert [m.name for m in spec.models] == [
        "tabular_mlp",
        "digits_cnn",
        "sentiment_lstm",
        "review_gpt",
    ]
    gpt = spec.select(["review_gpt"])[0]
    assert gpt.serving.format == "pretrained" and gpt.task.generation.max_tokens_limit == 96
    digits = spec.select(["digits_cnn"])[0]
    assert digits.inputs[0].shape == [-1, 1, 28, 28]
    assert digits.task.preprocess.kind == "image"


def test_tiny_spec_is_valid(tiny_spec):
    assert load_spec(tiny_spec).models[0].batching.max_batch_size == 8


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"    batching:": "    batchin:"},
            "models[0] 'tiny': batchin: unknown field; did you mean 'batching'?",
        ),
        (
            {"dtype: float32, shape: [-1, 30]": "dtype: float33, shape: [-1, 30]"},
            "inputs[0].dtype: Input should be 'float32'",
        ),
        (
            {"checkpoint: weights/tiny.pt": "checkpoint: weights/none.pt"},
            "source.checkpoint: file not found: weights/none.pt",
        ),
        ({"name": "bad name!"}, "name: 'bad name!' is not a valid model name"),
        (
            {"shape: [-1, 30]": "shape: [4, 30]"},
            "inputs[0].shape: the first axis is the batch axis and must be -1 while "
            "batching.max_batch_size is 8, got [4, 30]; for a model without a batch axis set "
            "batching: {max_batch_size: 0}",
        ),
        (
            {
                "shape: [-1, 1]": "shape: [2]",
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 0}",
            },
            "outputs[0].shape: a classifier labels rows of scores, got [2]",
        ),
        (
            {
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 8}\n"
                '    training: {script: "models.zoo.handed_over.make_tagger:write"}'
            },
            "training.script: it writes source.exported (or source.pretrained); give one, or "
            "remove it",
        ),
        ({"labels: labels.txt": "labels: nowhere.txt"}, "labels file not found: nowhere.txt"),
        (
            {"module: models.tabular:TabularMLP": "module: models.nothing_here:Net"},
            "source.module: cannot import module 'models.nothing_here'",
        ),
        (
            {
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 8}\n"
                "    serving: {format: aoti}"
            },
            "serving.format: 'aoti' is not in export.formats",
        ),
        (
            {"batching: {max_batch_size: 8}": "batching: {max_batch_size: -2}"},
            "batching.max_batch_size: Input should be greater than or equal to 0",
        ),
        (
            {
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 8}\n"
                "    per_runtime: {kserve: {threads: 2}}"
            },
            "per_runtime.kserve.[key]: Input should be 'torchserve' or 'triton'",
        ),
        (
            {
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 8}\n"
                "    per_runtime: {triton: {format: aoti}}"
            },
            "per_runtime.triton.format: 'aoti' is not in export.formats",
        ),
        (
            {
                "batching: {max_batch_size: 8}": "batching: {max_batch_size: 0}\n"
                "    per_runtime: {triton: {max_batch_size: 4}}"
            },
            "per_runtime.triton.max_batch_size: the model is never batched",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_model_and_field(tiny_spec, change, expected):
    problems = problems_for(tiny_spec.parent, tiny(**change))
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert "'tiny'" in problems[0] or "'bad name!'" in problems[0]


def test_duplicate_names_reported_with_other_problems(tiny_spec):
    broken = tiny(**{"dtype: float32, shape: [-1, 30]": "dtype: complex, shape: [-1, 30]"})
    problems = problems_for(tiny_spec.parent, tiny() + broken)
    assert any("'tiny': name: used by 2 models" in p for p in problems)
    assert any("models[1] 'tiny': inputs[0].dtype" in p for p in problems)


def test_not_yaml_and_missing_file(tmp_path):
    (tmp_path / "models.yaml").write_text("models: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "models.yaml")
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "absent.yaml")
    (tmp_path / "models.yaml").write_text("- just a list\n")
    with pytest.raises(SpecError, match="top-level 'models:' list"):
        load_spec(tmp_path / "models.yaml")


def test_unknown_model_selection_names_the_known_ones(tiny_spec):
    with pytest.raises(SpecError, match=r"unknown model 'nope'; models in the spec: \['tiny'\]"):
        load_spec(tiny_spec).select(["nope"])


def test_trained_models_may_lack_their_checkpoint_until_train_runs(tmp_path):
    entry = tiny(
        **{
            "    batching:": "    training: {data: 'models.tabular:load_data', epochs: 1, "
            "batch_size: 8, learning_rate: 0.01}\n    batching:",
            "checkpoint: weights/tiny.pt": "checkpoint: weights/later.pt",
        }
    )
    (tmp_path / "labels.txt").write_text("a\nb\n")
    assert load_spec(write_spec(tmp_path, entry)).models[0].training.epochs == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (("probability", "prob__0"), "'prob__0': '__' is reserved"),
        (("probability", "label"), "'label' is a tensor of this model's Triton ensemble"),
    ],
)
def test_a_tensor_name_a_runtime_cannot_take_is_refused_at_spec_check(tmp_path, change, message):
    import torch

    from models.tabular import TabularMLP

    torch.save(TabularMLP(30, 16).state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    entry = TINY_ENTRY.format(name="tiny", formats="onnx").replace("weights/tiny.pt", "tiny.pt")
    entry = entry.replace(*change).replace(
        "output: probabilities",
        "output: probabilities\n      preprocess: {kind: image, height: 2, width: 15}",
    )
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, entry))


def test_without_serving_format_the_first_exported_format_is_served(tmp_path):
    import torch

    from models.tabular import TabularMLP

    torch.save(TabularMLP(30, 16).state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    entry = TINY_ENTRY.format(name="tiny", formats="onnx, torchscript").replace(
        "weights/tiny.pt", "tiny.pt"
    )
    assert load_spec(write_spec(tmp_path, entry)).models[0].serving.format == "onnx"
    entry = TINY_ENTRY.format(name="tiny", formats="torchscript, onnx").replace(
        "weights/tiny.pt", "tiny.pt"
    )
    assert load_spec(write_spec(tmp_path, entry)).models[0].serving.format == "torchscript"


def test_per_runtime_settings_apply_to_that_runtime_only(tiny_spec):
    text = tiny_spec.read_text()
    indent = text[: text.index("batching:")].rsplit("\n", 1)[1]
    tiny_spec.write_text(
        text.replace(
            "batching: {max_batch_size: 8}",
            f"""batching: {{max_batch_size: 8,
{indent}  max_queue_delay_ms: 2}}
{indent}serving: {{format: torchscript, threads: 1}}
{indent}per_runtime: {{triton: {{max_queue_delay_ms: 0, format: onnx}}, """
            f"torchserve: {{threads: 2}}}}",
        )
    )
    spec = load_spec(tiny_spec).models[0]
    triton, torchserve = spec.for_runtime("triton"), spec.for_runtime("torchserve")
    assert (triton.batching.max_queue_delay_ms, triton.serving.format, triton.serving.threads) == (
        0,
        "onnx",
        1,
    )
    assert (
        torchserve.batching.max_queue_delay_ms,
        torchserve.serving.format,
        torchserve.serving.threads,
    ) == (2, "torchscript", 2)
    assert spec.for_runtime("kserve") is spec


def test_without_a_batch_axis_shapes_are_taken_as_they_are(tiny_spec):
    entry = tiny(
        **{
            "shape: [-1, 30]": "shape: [30]",
            "batching: {max_batch_size: 8}": "batching: {max_batch_size: 0}",
            "shape: [-1, 1]": "shape: [-1, 2]",
        }
    )
    model = load_spec(write_spec(tiny_spec.parent, entry)).models[0]
    assert model.inputs[0].shape == [30] and model.batching.max_batch_size == 0


GENERATION_ENTRY = """
  - name: chat
    source: {pretrained: hf_folder}
    task: {kind: generation, generation: {max_tokens: 16, max_tokens_limit: 64}}
"""


def test_a_generation_entry_needs_its_hugging_face_folder(tmp_path):
    (tmp_path / "hf_folder").mkdir()
    (tmp_path / "hf_folder" / "config.json").write_text("{}")
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, GENERATION_ENTRY))
    assert "source.pretrained: hf_folder/model.safetensors not found" in str(error.value)
    assert "tokenizer.json not found" in str(error.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        ("max_tokens: 16, max_tokens_limit: 64", "max_tokens (100) is over max_tokens_limit (64)"),
        ("generation: {max_tokens: 16", "generation: only kind generation takes it, not raw"),
    ],
)
def test_generation_limits_are_checked(tmp_path, change, expected):
    folder = tmp_path / "hf_folder"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    entry = GENERATION_ENTRY.replace(
        "max_tokens: 16, max_tokens_limit: 64", "max_tokens: 100, max_tokens_limit: 64"
    )
    if "only kind generation" in expected:
        entry = GENERATION_ENTRY.replace("kind: generation,", "kind: raw,")
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, entry))
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "batching", ["batching: {dynamic: false}", "per_runtime: {triton: {dynamic: false}}"]
)
def test_a_generation_model_is_batched_by_its_decode_loop_not_the_runtime(tmp_path, batching):
    folder = tmp_path / "hf_folder"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, GENERATION_ENTRY + f"    {batching}\n"))
    assert "batching.dynamic: a generation model's requests are batched by its decode" in str(
        error.value
    )
