"""The spec's schema: models.yaml as typed, validated objects (pydantic).

Sections the servers need too (tensors, pre-processing kinds, batching, serving) are defined
once in handlers/ and reused here, the build's own in sections.py; checks across sections are
in consistency.py; errors name the model, the field and the fix (loader.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from pydantic import Field, ValidationInfo, field_validator, model_validator

from handlers.formats import FORMATS
from handlers.plan import Batching, Serving, StrictModel, Workers
from handlers.preprocessing.tensors import TensorSpec
from scripts.spec.access import AccessSpec
from scripts.spec.cluster import KServeSpec
from scripts.spec.consistency import entry_problems
from scripts.spec.errors import SpecError
from scripts.spec.overrides import RuntimeName, RuntimeSettings
from scripts.spec.sections import (
    Export,
    Monitoring,
    Quantize,
    Source,
    Task,
    Tolerance,
    Training,
    root_of,
)
from scripts.spec.versions import RolloutGate, VersionSpec, version_update

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# what serving.format defaults to when listed first (a list: a YAML mistake may be unhashable)
TENSOR_FORMATS = [f.name for f in FORMATS.values() if not f.generation]
__all__ = ["Batching", "ModelSpec", "Serving", "SpecFile", "TensorSpec", "Tolerance", "Workers"]


class ModelSpec(StrictModel):
    name: str
    version: int = Field(default=1, ge=1)
    description: str = ""
    source: Source
    training: Training | None = None
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    task: Task
    # pyright 1.1.414 reads a pydantic default only from Field(default=...); handlers/plan.py
    # passes Batching's and Serving's positionally (Field(8, ge=0)), so it asks for every field
    batching: Batching = Batching()  # pyright: ignore[reportCallIssue]
    serving: Serving = Serving()  # pyright: ignore[reportCallIssue]
    export: Export = Export()
    quantize: Quantize = Quantize()
    tolerance: Tolerance = Tolerance()
    monitoring: Monitoring = Monitoring()
    per_runtime: dict[RuntimeName, RuntimeSettings] = {}
    versions: list[VersionSpec] = []  # other versions of this model (scripts/spec/versions.py)
    rollout: RolloutGate = RolloutGate()

    @model_validator(mode="before")
    @classmethod
    def _generation_defaults(cls, data: Any) -> Any:
        """A generation model takes token ids and answers logits, and is served as the
        Hugging Face folder it comes as: none of this needs saying in its entry."""
        task = data.get("task") if isinstance(data, dict) else None
        if not isinstance(task, dict) or task.get("kind") != "generation":
            return data
        serving = {"format": "pretrained", **(data.get("serving") or {})}
        served = serving["format"]  # an int8 folder is made from the fp32 one: both exported
        return {
            "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}],
            "export": {"formats": ["pretrained", *([served] if served != "pretrained" else [])]},
            **data,
            "serving": serving,
        }

    @model_validator(mode="before")
    @classmethod
    def _serve_the_first_format_by_default(cls, data: Any) -> Any:
        """Without serving.format, serve the first format export makes (`auto`: torchscript)."""
        if not isinstance(data, dict) or not isinstance(data.get("serving", {}), dict):
            return data
        if "format" in data.get("serving", {}):
            return data
        formats = (
            data.get("export", {}).get("formats") if isinstance(data.get("export"), dict) else None
        )
        if not isinstance(formats, list) or not formats or formats[0] not in TENSOR_FORMATS:
            return data  # the defaults, `auto`, or a mistake the field validators will name
        return {**data, "serving": {**data.get("serving", {}), "format": formats[0]}}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not re.fullmatch(NAME_PATTERN, name):  # re.match's `$` lets a trailing newline by
            raise ValueError(
                f"{name!r} is not a valid model name: use letters, digits, '_', '-' "
                "and '.', starting with a letter or digit, at most 64 characters"
            )
        return name

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ModelSpec:
        problems = entry_problems(self, root_of(info))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def for_runtime(self, runtime: str) -> ModelSpec:
        """The entry as that runtime serves it: its per_runtime settings applied."""
        settings = self.per_runtime.get(cast(RuntimeName, runtime))  # another name: none
        if settings is None:
            return self
        return self.model_copy(
            update={
                "batching": self.batching.model_copy(update=settings.batching_update()),
                "serving": self.serving.model_copy(update=settings.serving_update()),
            }
        )

    @property
    def version_numbers(self) -> list[int]:
        return sorted([self.version, *(v.version for v in self.versions)])

    def at_version(self, version: int) -> ModelSpec:
        """The entry as that version is built: its own source, training and checkpoint folder."""
        if version == self.version:
            return self
        for entry in self.versions:
            if entry.version == version:
                return self.model_copy(update=version_update(self, entry))
        raise SpecError(
            [f"{self.name}: no version {version}; versions in the spec: {self.version_numbers}"]
        )

    @property
    def tensor_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def model_files(self, root: Path) -> list[Path]:
        """What export reads besides the spec: the checkpoint or exported file, the
        pre-processing kind's assets, and training's held-out samples."""
        source = self.source
        files = [
            root / p
            for p in (source.checkpoint, source.exported, source.tokenizer)
            if p is not None
        ]
        if source.pretrained is not None:  # every file of the folder but training's own
            files += sorted(
                f
                for f in (root / source.pretrained).glob("*")
                if f.is_file() and not f.name.endswith((".stamp.json", "metrics.json"))
            )
        files += [root / p for p in self.task.preprocess.asset_files().values()]
        if source.checkpoint is not None:
            files.append((root / source.checkpoint).parent / "samples.npz")
        return files

    def input_files(self, root: Path) -> list[Path]:
        """Every file the serving artifacts depend on: the model's files plus the labels."""
        return self.model_files(root) + ([root / self.task.labels] if self.task.labels else [])


class SpecFile(StrictModel):
    # the folder paths, `module:` imports and build outputs are relative to, from the spec file's
    # folder: a spec kept under models/ (the zoo) builds into the same model_store/ and triton_repo/
    root: Path = Path(".")
    models: list[ModelSpec] = Field(min_length=1)
    kserve: KServeSpec = KServeSpec()  # `make kserve`'s manifests
    access: AccessSpec | None = None  # the gateway in front of both runtimes (scripts/gateway/)

    def select(self, names: list[str] | None) -> list[ModelSpec]:
        """The models named (all when none), or SpecError naming the unknown ones."""
        if not names:
            return list(self.models)
        known = {m.name: m for m in self.models}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SpecError(
                [f"unknown model {n!r}; models in the spec: {sorted(known)}" for n in unknown]
            )
        return [known[n] for n in names]
