"""`versions:` and `rollout:` in a spec entry: each version gets its own files, mistakes are named,
and a built version cannot be rebuilt from other inputs unless forced."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.pipeline.layout import Layout
from scripts.pipeline.sealed import refuse_changed, seal
from scripts.spec import BuildError, SpecError, load_spec
from tests.conftest import REPO, write_spec
from tests.unit.spec.test_spec import problems_for, tiny

SPEC = load_spec(REPO / "models.yaml")


def test_digits_ships_a_second_version_trained_longer_in_its_own_folder():
    digits = SPEC.select(["digits_cnn"])[0]
    assert digits.version_numbers == [1, 2]
    second = digits.at_version(2)
    assert second.version == 2 and second.training.epochs == 12 and digits.training.epochs == 8
    assert second.source.checkpoint == Path("checkpoints/digits_cnn/v2/model.pt")
    assert second.description.startswith("Trained 12 epochs")
    assert digits.at_version(1) is digits


def test_training_assets_of_a_version_move_to_its_folder_too():
    sentiment = SPEC.select(["sentiment_lstm"])[0].model_copy(update={"versions": []})
    from scripts.spec.versions import VersionSpec, version_update

    second = sentiment.model_copy(
        update=version_update(sentiment, VersionSpec(version=2, training={"seed": 1}))
    )
    assert second.task.preprocess.vocab == Path("checkpoints/sentiment_lstm/v2/vocab.json")
    assert sentiment.task.preprocess.vocab == Path("checkpoints/sentiment_lstm/vocab.json")


def test_review_gpt_ships_a_second_version_fine_tuned_into_a_folder_inside_the_first():
    gpt = SPEC.select(["review_gpt"])[0]
    assert gpt.version_numbers == [1, 2, 3, 4, 5, 6]
    second = gpt.at_version(2)
    assert second.source.pretrained == Path("checkpoints/review_gpt/v2")
    assert second.training.script == "models.review_gpt_finetune:write"
    assert gpt.source.pretrained == Path("checkpoints/review_gpt")
    assert gpt.training.script == "models.review_gpt:write"


GPT = SPEC.select(["review_gpt"])[0].model_copy(update={"versions": []})


@pytest.mark.parametrize(
    "entry, folder, trained",
    [
        # retrained here with other settings: into the first version's folder's v2/
        ({"training": {"seed": 1}}, "checkpoints/review_gpt/v2", True),
        # a fine-tune made elsewhere, given as its own folder: served as it is
        (
            {"source": {"pretrained": "checkpoints/review_gpt_ft"}},
            "checkpoints/review_gpt_ft",
            False,
        ),
        # its own folder, made here by its own training settings
        ({"source": {"pretrained": "ft"}, "training": {"seed": 2}}, "ft", True),
    ],
)
def test_a_hugging_face_folder_gets_versions_of_its_own(entry, folder, trained):
    from scripts.spec.versions import VersionSpec, version_problems

    versions = [VersionSpec(version=2, **entry)]
    second = GPT.model_copy(update={"versions": versions}).at_version(2)
    assert second.source.pretrained == Path(folder)
    assert (second.training is not None) == trained
    assert version_problems(GPT.model_copy(update={"versions": versions})) == []


def test_two_versions_of_one_hugging_face_folder_are_refused():
    from scripts.spec.versions import VersionSpec, version_problems

    same = VersionSpec(version=2, source={"pretrained": "checkpoints/review_gpt"})
    assert version_problems(GPT.model_copy(update={"versions": [same]})) == [
        "versions: version 2 uses the same file as version 1 (checkpoints/review_gpt) in the "
        "same format; give it a source.pretrained of its own, serving.format another format "
        "of the same weights, or serving.draft a draft version"
    ]


def test_an_unknown_version_is_named_with_the_known_ones():
    with pytest.raises(
        SpecError, match=r"digits_cnn: no version 9; versions in the spec: \[1, 2\]"
    ):
        SPEC.select(["digits_cnn"])[0].at_version(9)


@pytest.mark.parametrize(
    "versions, message",
    [
        ("[{version: 1}]", "versions: version numbers must be unique, got [1, 1]"),
        (
            "[{version: 2}]",
            "versions: version 2 uses the same file as version 1 (weights/tiny.pt) in the same "
            "format; give it a source.checkpoint of its own",
        ),
        (
            "[{version: 2, training: {epochs: 3}}]",
            "version 2 sets training, but the model has no training section",
        ),
        ("[{version: 2, source: {checkpont: x.pt}}]", "versions: version 2:"),
    ],
)
def test_version_mistakes_are_named(tmp_path, versions, message):
    (tmp_path / "labels.txt").write_text("malignant\nbenign\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tiny.pt").write_bytes(b"")
    entry = tiny(**{"    batching:": f"    versions: {versions}\n    batching:"})
    assert any(message in p for p in problems_for(tmp_path, entry)), problems_for(tmp_path, entry)


def test_rollout_thresholds_are_validated(tmp_path):
    (tmp_path / "labels.txt").write_text("malignant\nbenign\n")
    entry = tiny(**{"    batching:": "    rollout: {min_label_agreement: 1.5}\n    batching:"})
    assert any("rollout.min_label_agreement" in p for p in problems_for(tmp_path, entry))


def test_a_built_version_is_not_rebuilt_from_other_inputs_unless_forced(tmp_path):
    digits = SPEC.select(["digits_cnn"])[0]
    (tmp_path / "artifacts" / "digits_cnn" / "1").mkdir(parents=True)
    seal(digits, Layout.of(tmp_path))
    refuse_changed(digits, Layout.of(tmp_path))  # same inputs: rebuilt freely
    longer = digits.model_copy(
        update={"training": digits.training.model_copy(update={"epochs": 9})}
    )
    with pytest.raises(BuildError) as refused:
        refuse_changed(longer, Layout.of(tmp_path))
    assert refused.value.problems == [
        "digits_cnn version 1 was built from other inputs (training changed) and a built version "
        "is immutable: add the change as a new version under `versions:` in the spec, or rebuild "
        "this one anyway with FORCE=1"
    ]
    refuse_changed(longer, Layout.of(tmp_path), force=True)


def test_a_user_checkpoint_that_changed_is_refused_too(tmp_path):
    (tmp_path / "labels.txt").write_text("malignant\nbenign\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tiny.pt").write_bytes(b"first")
    spec = load_spec(write_spec(tmp_path, tiny())).models[0]
    (tmp_path / "artifacts" / "tiny" / "1").mkdir(parents=True)
    seal(spec, Layout.of(tmp_path))
    (tmp_path / "weights" / "tiny.pt").write_bytes(b"other weights")
    with pytest.raises(BuildError, match=r"\(files changed\)"):
        refuse_changed(spec, Layout.of(tmp_path))


def test_an_int8_version_serves_the_first_versions_weights_in_another_format():
    gpt = SPEC.select(["review_gpt"])[0]
    third = gpt.at_version(3)
    assert third.serving.format == "pretrained_int8" and gpt.serving.format == "pretrained"
    assert third.export.formats == ["pretrained", "pretrained_int8"]
    # the same folder, made by the same training: nothing is trained again for it
    assert third.source == gpt.source and third.training == gpt.training
    assert third.quantize.exclude == ["lm_head"]


def test_two_versions_of_the_same_weights_in_the_same_format_are_refused():
    from scripts.spec.versions import VersionSpec, version_problems

    twice = [
        VersionSpec(version=2, serving={"format": "pretrained_int8"}),
        VersionSpec(version=3, serving={"format": "pretrained_int8"}),
    ]
    problems = version_problems(GPT.model_copy(update={"versions": twice}))
    assert len(problems) == 1 and "version 3 uses the same file as version 2" in problems[0]
    assert "serving.format another format of the same weights" in problems[0]
    assert version_problems(GPT.model_copy(update={"versions": twice[:1]})) == []


def test_a_draft_version_serves_the_first_versions_weights_decoding_with_another_version():
    gpt = SPEC.select(["review_gpt"])[0]
    sixth = gpt.at_version(6)
    draft = sixth.task.generation.draft
    assert (draft.version, draft.tokens) == (4, 4)
    assert sixth.source == gpt.source and sixth.training == gpt.training
    assert gpt.task.generation.draft is None and gpt.at_version(4).task.generation.draft is None
    # unset, the field stays out of the plans' and records' dumps
    assert "draft" not in gpt.task.generation.model_dump()
    # the same weights: building it finds version 1's folder trained, never trains it again
    from scripts.pipeline.train import train_fingerprint

    layout = Layout.of(REPO)
    assert train_fingerprint(sixth, layout) == train_fingerprint(gpt, layout)


def test_a_draft_that_is_no_other_version_is_refused_by_name():
    from handlers.plan import Draft
    from scripts.spec.consistency import draft_problems
    from scripts.spec.versions import VersionSpec, version_problems

    selfish = [VersionSpec(version=2, serving={"draft": {"version": 2}})]
    problems = version_problems(GPT.model_copy(update={"versions": selfish}))
    assert len(problems) == 1 and "serving.draft.version: 2 is not another version" in problems[0]
    both = [
        VersionSpec(version=2, serving={"draft": {"version": 1}}),
        VersionSpec(version=3, serving={"draft": {"version": 1}}),
    ]
    problems = version_problems(GPT.model_copy(update={"versions": both}))
    assert len(problems) == 1 and "or serving.draft a draft version" in problems[0]
    generation = GPT.task.generation.model_copy(update={"draft": Draft(version=9)})
    alone = GPT.model_copy(
        update={"versions": [], "task": GPT.task.model_copy(update={"generation": generation})}
    )
    assert "it has none: add the draft" in draft_problems(alone)[0]
