"""`versions:` and `rollout:` in a model's spec entry.

A model entry describes its first version (`version:`, default 1). Each item of `versions:`
is another version of the same model: the same inputs, outputs, task and serving settings,
with its own source and/or training settings. A trained version gets its own checkpoint folder
(`checkpoints/<model>/v<n>/`, with the pre-processing assets training writes there; a Hugging
Face folder's versions go inside it: `<folder>/v<n>/`) unless it names a checkpoint; a version
you trained yourself names its checkpoint, exported file or pretrained folder (a folder of its
own without training settings of its own is not trained here).

`rollout:` holds the thresholds `make rollout`'s gate applies before a version takes traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from handlers.plan import Draft, Format, StrictModel
from scripts.spec.sections import Training, without_unset


class VersionServing(StrictModel):
    """What a version may serve differently: its format (an int8 variant of the same weights)
    and, for a generation model, a draft version that speculates for it; the other serving
    settings are the model's, one Triton config for all its versions."""

    format: Format | None = None
    draft: Draft | None = None

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(handler(self), ("draft",))


class VersionSpec(StrictModel):
    version: int = Field(ge=1)
    description: str | None = None
    serving: VersionServing = VersionServing()
    source: dict[str, Any] = {}  # fields of `source:` that differ from the first version
    training: dict[str, Any] = {}  # fields of `training:` that differ
    quantize: dict[str, Any] = {}  # fields of `quantize:` (its int8 gate, exclusions) that differ
    tolerance: dict[str, Any] = {}  # fields of `tolerance:` that differ
    rollout: dict[str, Any] = {}  # fields of `rollout:` (its gate) that differ


class RolloutGate(StrictModel):
    """What a version must show before unversioned traffic moves to it (docs/versions.md,
    "The gate"): its golden samples equal its eager outputs through its own endpoints, and side
    by side with the serving version on the same inputs..."""

    min_label_agreement: float = Field(
        default=0.9, ge=0, le=1
    )  # classifiers: share of equal top-1 labels
    max_output_diff: float = Field(
        default=float("inf"), ge=0
    )  # largest |new - serving| output element
    max_p99_factor: float = Field(default=2.0, gt=0)  # p99 under load vs the serving version's
    load_seconds: float = Field(default=2.0, gt=0, le=60)  # per version, for the p99 comparison
    load_clients: int = Field(default=4, ge=1, le=64)
    # generation models (None: the default below; unset, left out of the records)
    min_token_agreement: float | None = Field(default=None, ge=0, le=1)  # equal greedy tokens
    max_ttft_factor: float | None = Field(
        default=None, gt=0
    )  # time to first token vs the serving one
    # tokens per second under the gate's load vs the serving one: an optimised variant's
    # speed, gated only where given. Under live traffic on shared cores the comparison favours
    # the serving version (its streams join a running batch, the candidate waits for a core):
    # `make drill` on 2 cores measured an int8 review_gpt at 0.44x, 0.96x on a quiet server
    min_throughput_factor: float | None = Field(default=None, gt=0)
    # embedding models: the least cosine similarity of a candidate's vector with the serving
    # version's for the same input (a new embedding space needs a new index: lower it knowingly)
    min_cosine_similarity: float | None = Field(default=None, ge=-1, le=1)

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(
            handler(self),
            (
                "min_token_agreement",
                "max_ttft_factor",
                "min_throughput_factor",
                "min_cosine_similarity",
            ),
        )

    @property
    def token_agreement(self) -> float:
        return 0.8 if self.min_token_agreement is None else self.min_token_agreement

    @property
    def ttft_factor(self) -> float:
        return 2.0 if self.max_ttft_factor is None else self.max_ttft_factor

    @property
    def cosine_similarity(self) -> float:
        return 0.99 if self.min_cosine_similarity is None else self.min_cosine_similarity


def versioned_path(path: Path | None, base_dir: Path, version: int) -> Path | None:
    """A file under the first version's checkpoint folder, moved to its v<n>/ sub-folder."""
    if path is None or not path.is_relative_to(base_dir):
        return path
    return base_dir / f"v{version}" / path.relative_to(base_dir)


def version_update(spec, entry: VersionSpec) -> dict[str, Any]:
    """The ModelSpec fields that change for `entry` (raises ValueError naming a bad field)."""
    source = spec.source.model_validate(
        {**spec.source.model_dump(exclude_unset=True), **entry.source}
    )
    training = spec.training
    if entry.training:
        if training is None and "distill" in entry.training:
            training = Training()  # a student is trained here even from a folder given as is
        if training is None:
            raise ValueError(
                f"versions: version {entry.version} sets training, "
                "but the model has no training section"
            )
        training = training.model_validate(
            {**training.model_dump(exclude_unset=True), **entry.training}
        )
    preprocess = spec.task.preprocess
    if same_weights(entry):
        pass  # the first version's source and training: only the format differs
    elif source.pretrained is not None and "pretrained" in entry.source and not entry.training:
        training = None  # a folder of its own (a fine-tune made elsewhere) is served as given
    elif training is not None and "pretrained" not in entry.source and source.pretrained:
        # trained here: the script writes the version's folder inside the first one's
        source = source.model_copy(update={"pretrained": source.pretrained / f"v{entry.version}"})
    if (
        training is not None
        and not same_weights(entry)
        and "checkpoint" not in entry.source
        and source.checkpoint is not None
    ):
        base_dir = source.checkpoint.parent
        source = source.model_copy(
            update={"checkpoint": versioned_path(source.checkpoint, base_dir, entry.version)}
        )
        preprocess = preprocess.model_copy(
            update={
                field: versioned_path(path, base_dir, entry.version)
                for field, path in preprocess.asset_files().items()
            }
        )
    quantize = spec.quantize.model_validate(
        {**spec.quantize.model_dump(exclude_unset=True), **entry.quantize}
    )
    tolerance = spec.tolerance.model_validate(
        {**spec.tolerance.model_dump(exclude_unset=True), **entry.tolerance}
    )
    if training is not None and training.distill is not None:
        distill = training.distill
        distill = distill.model_copy(update={"teacher_folder": teacher_folder(spec, entry)})
        training = training.model_copy(update={"distill": distill})
    task = drafted(spec, entry, spec.task.model_copy(update={"preprocess": preprocess}))
    serving, export = spec.serving, spec.export
    if entry.serving.format is not None:
        serving = serving.model_copy(update={"format": entry.serving.format})
        if not export.auto and entry.serving.format not in export.formats:
            export = export.model_copy(update={"formats": [*export.formats, entry.serving.format]})
    rollout = spec.rollout.model_validate(
        {**spec.rollout.model_dump(exclude_unset=True), **entry.rollout}
    )
    return {
        "version": entry.version,
        "rollout": rollout,
        "serving": serving,
        "export": export,
        "source": source,
        "training": training,
        "quantize": quantize,
        "tolerance": tolerance,
        "description": entry.description or spec.description,
        "task": task,
        "versions": [],
    }


def drafted(spec, entry: VersionSpec, task):
    """The version's task with its draft: its own serving.draft, else the model's (the draft
    version itself decodes plainly)."""
    generation, draft = task.generation, entry.serving.draft
    if draft is None:
        if generation and generation.draft and generation.draft.version == entry.version:
            return task.model_copy(
                update={"generation": generation.model_copy(update={"draft": None})}
            )
        return task
    if not task.serving.pretrained or generation is None:
        raise ValueError("serving.draft: only a generation model decodes with a draft")
    others = {spec.version, *(v.version for v in spec.versions)} - {entry.version}
    if draft.version not in others:
        raise ValueError(
            f"serving.draft.version: {draft.version} is not another version of {spec.name} "
            f"({sorted(others)})"
        )
    return task.model_copy(update={"generation": generation.model_copy(update={"draft": draft})})


def teacher_folder(spec, entry: VersionSpec) -> Path:
    """The Hugging Face folder of the version `entry` distils from (ValueError naming a
    teacher that is not another version of the model)."""
    teacher = entry.training["distill"].get("teacher", 1)
    others = {v.version: v for v in spec.versions if v.version != entry.version}
    if teacher != spec.version and teacher not in others:
        raise ValueError(
            f"training.distill.teacher: version {teacher} is not another version of "
            f"{spec.name} ({sorted([spec.version, *others])})"
        )
    source = (
        spec.source if teacher == spec.version else version_update(spec, others[teacher])["source"]
    )
    if source.pretrained is None:
        raise ValueError("training.distill: the teacher must be a Hugging Face folder")
    return source.pretrained


def same_weights(entry: VersionSpec) -> bool:
    """A version that only serves the first version's weights otherwise: another format
    (int8), or with a draft."""
    serves_otherwise = entry.serving.format is not None or entry.serving.draft is not None
    return serves_otherwise and not entry.source and not entry.training


def version_problems(spec) -> list[str]:
    """Versions are unique and never share a source file with another version serving the
    same format."""
    numbers = [spec.version, *(v.version for v in spec.versions)]
    if len(set(numbers)) != len(numbers):
        return [f"versions: version numbers must be unique, got {numbers}"]
    problems, sources = [], {}
    for entry in [None, *spec.versions]:
        try:
            variant = spec if entry is None else spec.model_copy(update=version_update(spec, entry))
        except ValueError as exc:
            version = spec.version if entry is None else entry.version
            problems.append(f"versions: version {version}: {exc}".replace("\n", " "))
            continue
        generation = variant.task.generation
        draft = generation.draft.version if generation and generation.draft else None
        source = (variant.source.made, variant.serving.format, draft)
        if source in sources:
            kinds = ("checkpoint", "exported", "pretrained")
            field = next(f for f in kinds if getattr(variant.source, f) is not None)
            problems.append(
                f"versions: version {variant.version} "
                f"uses the same file as version {sources[source]} "
                f"({source[0]}) in the same format; give it a source.{field} of its own, "
                "serving.format another format of the same weights, or serving.draft a "
                "draft version"
            )
        sources[source] = variant.version
    return problems
