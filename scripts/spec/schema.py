"""The spec's schema: models.yaml as typed, validated objects (pydantic).

Sections the servers need too (tensors, pre-processing kinds, batching, serving) are defined
once in handlers/ and reused here; errors name the model, the field and the fix (loader.py).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from handlers.kinds import ENSEMBLE_OUTPUTS, Preprocess, Raw
from handlers.plan import Batching, Format, Serving, StrictModel, Workers
from handlers.tensors import TensorSpec
from scripts.spec.cluster import KServeSpec
from scripts.spec.errors import SpecError
from scripts.spec.overrides import RuntimeName, RuntimeSettings, override_problems
from scripts.spec.versions import RolloutGate, VersionSpec, version_problems, version_update

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
__all__ = ["Batching", "ModelSpec", "Serving", "SpecFile", "TensorSpec", "Workers"]


def _spec_root(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("root", "."))


def _must_exist(path: Path, info: ValidationInfo, what: str, fix: str) -> None:
    if not (_spec_root(info) / path).exists():
        raise ValueError(f"{what} not found: {path} ({fix})")


class Source(StrictModel):
    """Either an nn.Module class plus a state_dict checkpoint, or an already exported file."""

    module: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    checkpoint: Path | None = None
    kwargs: dict[str, Any] = {}
    exported: Path | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if self.exported is None and (self.module is None or self.checkpoint is None):
            raise ValueError(
                "give either module ('package.module:Class') with checkpoint, "
                "or exported (a TorchScript .pt or ExportedProgram .pt2 file)"
            )
        if self.exported is not None and (self.module or self.checkpoint):
            raise ValueError("give either module + checkpoint or exported, not both")
        if self.exported is not None and self.exported.suffix not in (".pt", ".pt2"):
            raise ValueError(
                f"exported must be a TorchScript .pt or ExportedProgram .pt2 file, "
                f"got {self.exported}"
            )
        return self

    @property
    def is_torchscript(self) -> bool:
        return self.exported is not None and self.exported.suffix == ".pt"


class Training(StrictModel):
    """How `make train` produces the checkpoint: fit on `data`; without `data`, save the seeded
    random initialisation (models whose serving is under test, not their accuracy: the zoo).
    Omit the section for a model you trained yourself."""

    data: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0
    # 'package.module:function' returning {file name: text} written beside the checkpoint
    # (a tokenizer.json trained at build time), for models without data
    assets: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # files or folders the data function reads: hashed, so editing the data retrains
    data_files: list[Path] = []


class Task(StrictModel):
    kind: Literal["classification", "regression", "embedding", "raw"]
    labels: Path | None = None  # classification: one label per line, in class order
    output: Literal["logits", "probabilities"] = "logits"
    top_k: int = Field(1, gt=0)
    preprocess: Preprocess = Raw()

    @model_validator(mode="after")
    def _labels_for_classification(self, info: ValidationInfo) -> Task:
        if self.kind == "classification":
            if self.labels is None:
                raise ValueError("classification needs labels: a text file with one label per line")
            _must_exist(
                self.labels, info, "labels file", "create it, one label per line in class order"
            )
        return self


ALL_FORMATS: list[Format] = ["torchscript", "onnx", "exported_program", "aoti"]


class Export(StrictModel):
    # `auto`: every format the model supports; one that cannot export it (or disagrees with
    # eager) is reported with the reason and left out, instead of failing the build.
    formats: list[Format] | Literal["auto"] = Field(["torchscript", "onnx"], min_length=1)

    @property
    def auto(self) -> bool:
        return self.formats == "auto"

    @property
    def wanted(self) -> list[Format]:
        return list(ALL_FORMATS) if self.auto else list(self.formats)


class Quantize(StrictModel):
    """How `onnx_int8` is made from the ONNX export, and the accuracy it may lose."""

    method: Literal["auto", "dynamic", "static"] = (
        "auto"  # auto: static QDQ with convolutions, else dynamic
    )
    calibration_size: int = Field(
        64, gt=0
    )  # static: rows from the training data (else random inputs)
    exclude: list[str] = []  # ONNX node names kept in fp32
    per_channel: bool = True
    reduce_range: bool | None = None  # 7-bit weights; default: unless the CPU has VNNI
    max_accuracy_drop: float = Field(1.0, ge=0)  # points of accuracy (or top-1 agreement with fp32)
    max_relative_error: float = Field(
        0.05, gt=0
    )  # models that are not classifiers: outputs vs fp32


class Tolerance(StrictModel):
    atol: float = Field(1e-5, ge=0)
    rtol: float = Field(1e-4, ge=0)


class ModelSpec(StrictModel):
    name: str
    version: int = Field(1, ge=1)
    description: str = ""
    source: Source
    training: Training | None = None
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    task: Task
    batching: Batching = Batching()
    serving: Serving = Serving()
    export: Export = Export()
    quantize: Quantize = Quantize()
    tolerance: Tolerance = Tolerance()
    per_runtime: dict[RuntimeName, RuntimeSettings] = {}
    versions: list[VersionSpec] = []  # other versions of this model (scripts/spec/versions.py)
    rollout: RolloutGate = RolloutGate()

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
        if (
            not isinstance(formats, list)
            or not formats
            or formats[0] not in ALL_FORMATS + ["onnx_int8"]
        ):
            return data  # the defaults, `auto`, or a mistake the field validators will name
        return {**data, "serving": {**data.get("serving", {}), "format": formats[0]}}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(
                f"{name!r} is not a valid model name: use letters, digits, '_', '-' "
                "and '.', starting with a letter or digit, at most 64 characters"
            )
        return name

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ModelSpec:
        problems = [*self._format_problems(), *self._file_problems(info), *self._import_problems()]
        names = [t.name for t in [*self.inputs, *self.outputs]]
        if len(set(names)) != len(names):
            problems.append(f"inputs/outputs: tensor names must be unique, got {names}")
        problems += [
            f"inputs/outputs: {n!r}: '__' is reserved (Triton's libtorch backend names tensors "
            "<name>__<index>); rename it"
            for n in names
            if "__" in n
        ]
        problems += [
            f"inputs/outputs: {n!r} is a tensor of this classifier's Triton ensemble; rename it"
            for n in names
            if n in self._ensemble_tensors()
        ]
        try:
            self.task.preprocess.produces(self.inputs)
        except ValueError as exc:
            problems.append(str(exc))
        problems += self._padding_problems()
        problems += override_problems(
            self.per_runtime, self.batching.max_batch_size, self.export.wanted
        )
        problems += version_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _ensemble_tensors(self) -> set[str]:
        """Names a classifier's Triton ensemble uses for its own tensors (bytes in, label out)."""
        raw = self.task.preprocess.ensemble_input
        return {raw, *ENSEMBLE_OUTPUTS} if raw and self.task.kind == "classification" else set()

    def _padding_problems(self) -> list[str]:
        pad = self.batching.pad
        if pad is None:
            return []
        problems = []
        if not any(-1 in t.shape[1:] for t in self.inputs):
            problems.append(
                "batching.pad: no input has a dynamic non-batch axis to pad; remove pad"
            )
        if pad.mask is not None and pad.mask not in self.tensor_names:
            problems.append(
                f"batching.pad.mask: {pad.mask!r} is not an input (inputs: {self.tensor_names})"
            )
        problems += [
            f"batching.pad: output {t.name!r} has a dynamic non-batch axis, which padding would change; "
            "remove pad (requests then batch only with others of the same shape)"
            for t in self.outputs
            if -1 in t.shape[1:]
        ]
        return problems

    def _format_problems(self) -> list[str]:
        problems = []
        if self.serving.format not in self.export.wanted:
            problems.append(
                f"serving.format: {self.serving.format!r} is not in export.formats "
                f"{self.export.formats}; add it there or serve one of those"
            )
        if "onnx_int8" in self.export.wanted and "onnx" not in self.export.wanted:
            problems.append(
                "export.formats: onnx_int8 is quantised from the ONNX export; add onnx before it"
            )
        if self.source.is_torchscript and not self.export.auto:
            unsupported = sorted(set(self.export.formats) - {"torchscript", "onnx"})
            if unsupported:
                problems.append(
                    f"export.formats: {unsupported} cannot be made from a TorchScript "
                    "file; use torchscript and onnx, or give an ExportedProgram .pt2"
                )
        return problems

    def _file_problems(self, info: ValidationInfo) -> list[str]:
        """Files the build cannot make itself must exist now; trained models make theirs."""
        if self.training is not None:
            return []
        wanted = {
            "source.checkpoint": self.source.checkpoint,
            "source.exported": self.source.exported,
            **{
                f"task.preprocess.{f}": path
                for f, path in self.task.preprocess.asset_files().items()
            },
        }
        return [
            f"{field}: file not found: {path} (fix the path, or add a training section "
            "so `make train` creates it)"
            for field, path in wanted.items()
            if path is not None and not (_spec_root(info) / path).exists()
        ]

    def _import_problems(self) -> list[str]:
        return [
            f"{field}: cannot import module {target.split(':')[0]!r} (is it on the path, "
            "e.g. under models/?)"
            for field, target in (
                ("source.module", self.source.module),
                ("training.data", self.training and self.training.data),
            )
            if target and importlib.util.find_spec(target.split(":")[0]) is None
        ]

    def for_runtime(self, runtime: str) -> ModelSpec:
        """The entry as that runtime serves it: its per_runtime settings applied."""
        settings = self.per_runtime.get(runtime)
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
        files = [root / p for p in (source.checkpoint, source.exported) if p is not None]
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
