"""models.yaml -> typed, validated objects. The single source of truth for every build step.

Errors name the model, the field and what would be valid, one line per problem (SpecError).
"""
from __future__ import annotations

import contextlib
import difflib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from scripts.errors import SpecError

DType = Literal["float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
Format = Literal["torchscript", "onnx", "aoti", "exported_program"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _spec_root(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("root", "."))


def _must_exist(path: Path, info: ValidationInfo, what: str, fix: str) -> None:
    if not (_spec_root(info) / path).exists():
        raise ValueError(f"{what} not found: {path} ({fix})")


class TensorSpec(StrictModel):
    name: str = Field(pattern=TENSOR_NAME_PATTERN)
    dtype: DType
    shape: list[int] = Field(min_length=1)
    # Valid values (inclusive), e.g. token ids below the vocabulary size: used to draw
    # verification inputs and to reject out-of-range requests.
    range: tuple[float, float] | None = None

    @field_validator("shape")
    @classmethod
    def _batch_axis_first(cls, shape: list[int]) -> list[int]:
        if shape[0] != -1:
            raise ValueError(f"the first axis is the batch axis and must be -1, got {shape}")
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError(f"dimensions must be positive or -1 (dynamic), got {shape}")
        return shape


class Source(StrictModel):
    """Either an nn.Module class plus a state_dict checkpoint, or an already exported file."""
    module: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    checkpoint: Path | None = None
    kwargs: dict[str, Any] = {}
    exported: Path | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if self.exported is None and (self.module is None or self.checkpoint is None):
            raise ValueError("give either module ('package.module:Class') with checkpoint, "
                             "or exported (a TorchScript .pt or ExportedProgram .pt2 file)")
        if self.exported is not None and (self.module or self.checkpoint):
            raise ValueError("give either module + checkpoint or exported, not both")
        if self.exported is not None and self.exported.suffix not in (".pt", ".pt2"):
            raise ValueError(f"exported must be a TorchScript .pt or ExportedProgram .pt2 file, "
                             f"got {self.exported}")
        return self

    @property
    def is_torchscript(self) -> bool:
        return self.exported is not None and self.exported.suffix == ".pt"


class Training(StrictModel):
    """How `make train` produces the checkpoint. Omit it for a model you trained yourself."""
    data: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    seed: int = 0


class NoPreprocess(StrictModel):
    kind: Literal["none"] = "none"


class Standardize(StrictModel):
    kind: Literal["standardize"]
    stats: Path  # JSON with "mean" and "std" lists, written by training


class ImagePreprocess(StrictModel):
    kind: Literal["image"]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    grayscale: bool = True
    mean: float = 0.0
    std: float = Field(1.0, gt=0)


class TextPreprocess(StrictModel):
    kind: Literal["text"]
    vocab: Path  # JSON {"tokens": [...]}: id = position; 0 pads, 1 is the unknown word
    max_length: int = Field(gt=0)
    lowercase: bool = True


Preprocess = Annotated[Union[NoPreprocess, Standardize, ImagePreprocess, TextPreprocess],
                       Field(discriminator="kind")]


class Task(StrictModel):
    kind: Literal["classification", "regression", "embedding", "raw"]
    labels: Path | None = None            # classification: one label per line, in class order
    output: Literal["logits", "probabilities"] = "logits"
    top_k: int = Field(1, gt=0)
    preprocess: Preprocess = NoPreprocess()

    @model_validator(mode="after")
    def _labels_for_classification(self, info: ValidationInfo) -> Task:
        if self.kind == "classification":
            if self.labels is None:
                raise ValueError("classification needs labels: a text file with one label per line")
            _must_exist(self.labels, info, "labels file", "create it, one label per line in class order")
        return self


class Batching(StrictModel):
    max_batch_size: int = Field(8, ge=0)  # 0: the runtime never batches requests
    max_queue_delay_ms: float = Field(5.0, ge=0)
    preferred_batch_sizes: list[int] = []


class Workers(StrictModel):
    min: int = Field(1, ge=1)
    max: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Workers:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Serving(StrictModel):
    format: Format = "torchscript"        # which exported format the servers load
    workers: Workers = Workers()          # TorchServe workers
    instances: int = Field(1, ge=1)       # Triton instance_group count
    threads: int = Field(1, ge=1)         # intra-op threads per TorchServe worker / Triton instance
    response_timeout_s: int = Field(120, gt=0)
    startup_timeout_s: int = Field(120, gt=0)


class Export(StrictModel):
    formats: list[Format] = Field(["torchscript", "onnx"], min_length=1)


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
    tolerance: Tolerance = Tolerance()

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not a valid model name: use letters, digits, '_', '-' "
                             "and '.', starting with a letter or digit, at most 64 characters")
        return name

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ModelSpec:
        problems = [*self._format_problems(), *self._file_problems(info),
                    *self._import_problems()]
        names = [t.name for t in [*self.inputs, *self.outputs]]
        if len(set(names)) != len(names):
            problems.append(f"inputs/outputs: tensor names must be unique, got {names}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _format_problems(self) -> list[str]:
        problems = []
        if self.serving.format not in self.export.formats:
            problems.append(f"serving.format: {self.serving.format!r} is not in export.formats "
                            f"{self.export.formats}; add it there or serve one of those")
        if self.source.is_torchscript:
            unsupported = sorted(set(self.export.formats) - {"torchscript", "onnx"})
            if unsupported:
                problems.append(f"export.formats: {unsupported} cannot be made from a TorchScript "
                                "file; use torchscript and onnx, or give an ExportedProgram .pt2")
        return problems

    def _file_problems(self, info: ValidationInfo) -> list[str]:
        """Files the build cannot make itself must exist now; trained models make theirs."""
        if self.training is not None:
            return []
        wanted = [("source.checkpoint", self.source.checkpoint), ("source.exported", self.source.exported)]
        preprocess = self.task.preprocess
        wanted += [("task.preprocess.stats", getattr(preprocess, "stats", None)),
                   ("task.preprocess.vocab", getattr(preprocess, "vocab", None))]
        return [f"{field}: file not found: {path} (fix the path, or add a training section "
                "so `make train` creates it)"
                for field, path in wanted if path is not None and not (_spec_root(info) / path).exists()]

    def _import_problems(self) -> list[str]:
        return [f"{field}: cannot import module {target.split(':')[0]!r} (is it on the path, "
                "e.g. under models/?)"
                for field, target in (("source.module", self.source.module),
                                      ("training.data", self.training and self.training.data))
                if target and importlib.util.find_spec(target.split(":")[0]) is None]

    @property
    def tensor_names(self) -> list[str]:
        return [t.name for t in self.inputs]


class SpecFile(StrictModel):
    models: list[ModelSpec] = Field(min_length=1)

    def select(self, names: list[str] | None) -> list[ModelSpec]:
        """The models named (all when none), or SpecError naming the unknown ones."""
        if not names:
            return list(self.models)
        known = {m.name: m for m in self.models}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SpecError([f"unknown model {n!r}; models in the spec: {sorted(known)}" for n in unknown])
        return [known[n] for n in names]


# --- loading and error messages ---------------------------------------------------------------

def load_spec(path: str | Path = "models.yaml") -> SpecFile:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError([f"{path}: spec file not found (pass --spec PATH)"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    # Paths in the spec are relative to the spec file; imports resolve from its folder too.
    root = path.resolve().parent
    problems = _duplicate_names(path, raw)
    with _on_import_path(root):
        try:
            spec = SpecFile.model_validate(raw, context={"root": root})
        except ValidationError as exc:
            problems += [_describe(path, raw, error) for error in exc.errors()]
    if problems:
        raise SpecError(problems)
    return spec


def _duplicate_names(path: Path, raw: Any) -> list[str]:
    """Checked on the raw entries, so a duplicate is reported even when an entry is invalid."""
    entries = raw.get("models") if isinstance(raw, dict) else None
    names = [e.get("name") for e in entries or [] if isinstance(e, dict) and e.get("name")]
    return [f"{path}: model {n!r}: name: used by {names.count(n)} models; each model needs its own name"
            for n in sorted({n for n in names if names.count(n) > 1})]


@contextlib.contextmanager
def _on_import_path(root: Path):
    """The spec's folder on sys.path while validating, so `module:` targets next to it import."""
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(root))


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for cls in StrictModel.__subclasses__():
        names.update(cls.model_fields)
    return names


def _describe(path: Path, raw: Any, error: dict) -> str:
    loc = list(error["loc"])
    where = f"{path}"
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entry = raw["models"][loc[1]] if isinstance(raw, dict) else {}
        name = entry.get("name") if isinstance(entry, dict) else None
        where += f": models[{loc[1]}]" + (f" {name!r}" if name else "")
        loc = loc[2:]
    field = _dotted(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _all_field_names(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it (see the README's spec reference)"
        message = f"unknown field; {hint}"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "model_type" and not loc:
        message = "the spec must be a mapping with a top-level 'models:' list"
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _dotted(loc: list) -> str:
    """('inputs', 0, 'dtype') -> 'inputs[0].dtype'; drops pydantic's union-tag entries."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("none", "standardize", "image", "text") and out.endswith("preprocess"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out
