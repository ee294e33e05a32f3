"""The sections of a model's spec entry that are the build's own: where the model comes from,
how it is trained, its task, which formats are exported and quantised, and the tolerances
exports are verified to. Each validates its own fields; checks across sections are in
consistency.py, the entry itself in schema.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, ValidationInfo, model_serializer
from pydantic import field_validator, model_validator

from handlers.formats import FORMATS
from handlers.preprocessing.kinds import Preprocess, Raw
from handlers.plan import Format, Generation, StrictModel
from handlers.tasks import ServingTask, TaskKind, serving_task

# `formats: auto`; Format is Literal[FORMAT_NAMES], names read from the registry (handlers/plan.py)
ALL_FORMATS: list[Format] = [f.name for f in FORMATS.values() if f.auto]  # pyright: ignore[reportInvalidTypeForm]


def root_of(info: ValidationInfo) -> Path:
    """The folder the spec's paths are relative to (the validation context's `root`)."""
    return Path((info.context or {}).get("root", "."))


def without_unset(data: dict, fields: tuple[str, ...]) -> dict:
    """A dump without these fields where they are unset: fields added after builds were
    recorded (fingerprints, sealed versions) leave those records valid."""
    return {k: v for k, v in data.items() if not (k in fields and v is None)}


def must_exist(path: Path, info: ValidationInfo, what: str, fix: str) -> None:
    if not (root_of(info) / path).exists():
        raise ValueError(f"{what} not found: {path} ({fix})")


class Source(StrictModel):
    """An nn.Module class plus a state_dict checkpoint, an already exported file, or (a
    generation model) a Hugging Face folder as `save_pretrained` writes it."""

    module: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    checkpoint: Path | None = None
    kwargs: dict[str, Any] = {}
    exported: Path | None = None
    pretrained: Path | None = None  # config.json, model.safetensors, tokenizer.json
    tokenizer: Path | None = None  # a generation model from module + checkpoint: tokenizer.json

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        given = [self.module is not None, self.exported is not None, self.pretrained is not None]
        if sum(given) != 1 or (self.module is None) != (self.checkpoint is None):
            raise ValueError(
                "give one of: module ('package.module:Class') with checkpoint; exported (a "
                "TorchScript .pt or ExportedProgram .pt2 file); pretrained (a Hugging Face "
                "folder with config.json, model.safetensors and tokenizer.json)"
            )
        if self.exported is not None and self.exported.suffix not in (".pt", ".pt2"):
            raise ValueError(
                f"exported must be a TorchScript .pt or ExportedProgram .pt2 file, "
                f"got {self.exported}"
            )
        return self

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(handler(self), ("pretrained", "tokenizer"))

    @property
    def is_torchscript(self) -> bool:
        return self.exported is not None and self.exported.suffix == ".pt"

    @property
    def made(self) -> Path:
        """What training makes (or the user brings): checkpoint, exported file or folder."""
        made = self.checkpoint or self.exported or self.pretrained
        assert made is not None, "the source check requires one of them"
        return made


TARGET = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # 'package.module:function'


class Distill(StrictModel):
    """A language model's student: made from some of a teacher version's layers and/or with its
    MLPs pruned narrower, then trained on the teacher's soft targets with DistilGPT2's loss
    (scripts/pipeline/distill.py). The training section's epochs, batch_size, learning_rate and
    seed apply."""

    teacher: int = Field(default=1, ge=1)  # the version of this model that teaches
    # the teacher's layers the student starts from (None: all of them)
    layers: list[int] | None = Field(default=None, min_length=1)
    # share of every layer's MLP channels pruned away, the least important first (structured
    # pruning: the student is the teacher with narrower MLPs, recovered by the same training)
    mlp: float = Field(default=0.0, ge=0, lt=1)
    # share of every layer's attention heads pruned away, the least important key/value groups
    # first (a Llama-style model: GPT-2's config cannot hold fewer heads than its width)
    heads: float = Field(default=0.0, ge=0, lt=1)
    texts: str = Field(pattern=TARGET)  # 'package.module:function': the training texts
    held_out: str = Field(pattern=TARGET)  # the texts the gate measures perplexity on
    temperature: float = Field(default=2.0, gt=0)  # of the soft targets
    soft: float = Field(default=0.5, ge=0)  # weight of KL to the teacher's soft targets
    hard: float = Field(default=0.5, ge=0)  # of cross-entropy on the next token
    cosine: float = Field(default=0.1, ge=0)  # of 1 - cos(last hidden states)
    max_perplexity_ratio: float = Field(default=1.3, ge=1)  # held-out, student / teacher
    # (a distilled student's default, DistilGPT2's 1.29; give 1.15 for a pruned one)
    # the teacher's folder: set from `teacher` when the version is read (scripts/spec/versions.py)
    teacher_folder: Path | None = Field(default=None, exclude=True)

    @field_validator("layers")
    @classmethod
    def _ordered(cls, layers: list[int] | None) -> list[int] | None:
        if layers is None:
            return layers
        if any(b <= a for a, b in zip(layers, layers[1:])) or layers[0] < 0:
            raise ValueError(f"layers {layers}: give teacher layer indices in rising order")
        return layers

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)  # one way to make a student left out where unused
        return {k: v for k, v in data.items() if not (k in ("layers", "mlp", "heads") and not v)}

    @model_validator(mode="after")
    def _smaller(self) -> Distill:
        if self.layers is None and not self.mlp and not self.heads:
            raise ValueError(
                "a student smaller than its teacher: give layers (the ones it keeps), mlp (the "
                "share of MLP channels pruned) and/or heads (of attention heads), e.g. layers: "
                "[0, 2] or mlp: 0.3"
            )
        return self


class Training(StrictModel):
    """How `make train` produces the checkpoint: fit on `data`; without `data`, save the seeded
    random initialisation (models whose serving is under test, not their accuracy: the zoo).
    Omit the section for a model you trained yourself."""

    data: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    epochs: int = Field(default=1, gt=0)
    batch_size: int = Field(default=32, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    seed: int = 0
    # 'package.module:function' returning {file name: text} written beside the checkpoint
    # (a tokenizer.json trained at build time), for models without data
    assets: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # files or folders the data function reads: hashed, so editing the data retrains
    data_files: list[Path] = []
    # 'package.module:function' called with (path, seed) that writes source.exported itself: a
    # model that arrives as a file (traced TorchScript) made at build time instead of kept in git
    script: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # a language model's version made from a teacher version (docs/optimisation.md)
    distill: Distill | None = None

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(handler(self), ("distill",))

    def fingerprinted(self) -> dict:
        """The settings as builds record them; `script` only when set, so that builds made
        before it existed stay valid."""
        return self.model_dump(mode="json", exclude=set() if self.script else {"script"})


class Task(StrictModel):
    kind: TaskKind  # a name in handlers/tasks.py's SERVING_TASKS (and scripts/tasks' TASKS)
    labels: Path | None = None  # classification: one label per line, in class order
    output: Literal["logits", "probabilities"] = "logits"
    top_k: int = Field(default=1, gt=0)
    preprocess: Preprocess = Raw()
    generation: Generation | None = None  # generation: request defaults and limits
    # embedding: the output that is the vector (else the first); answered L2-normalised; the
    # least cosine similarity of a served vector with eager's (`make verify`; else 0.999)
    embedding_output: str | None = None
    normalize: bool | None = None
    min_cosine_similarity: float | None = Field(default=None, ge=-1, le=1)

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(
            handler(self), ("generation", "embedding_output", "normalize", "min_cosine_similarity")
        )

    @property
    def serving(self) -> ServingTask:
        return serving_task(self.kind)

    @property
    def cosine_similarity(self) -> float:
        return 0.999 if self.min_cosine_similarity is None else self.min_cosine_similarity

    @model_validator(mode="after")
    def _what_the_kind_needs(self, info: ValidationInfo) -> Task:
        problems = self.serving.section_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        if self.labels is not None:
            must_exist(
                self.labels, info, "labels file", "create it, one label per line in class order"
            )
        return self


class Export(StrictModel):
    # `auto`: every format the model supports; one that cannot export it (or disagrees with
    # eager) is reported with the reason and left out, instead of failing the build.
    formats: list[Format] | Literal["auto"] = Field(  # pyright: ignore[reportInvalidTypeForm]
        default=["torchscript", "onnx"], min_length=1
    )

    @property
    def auto(self) -> bool:
        return self.formats == "auto"

    @property
    def wanted(self) -> list[Format]:  # pyright: ignore[reportInvalidTypeForm]
        return list(ALL_FORMATS) if self.auto else list(self.formats)


class Quantize(StrictModel):
    """How `onnx_int8` is made from the ONNX export, and the accuracy it may lose."""

    method: Literal["auto", "dynamic", "static"] = (
        "auto"  # auto: static QDQ with convolutions, else dynamic
    )
    calibration_size: int = Field(
        default=64, gt=0
    )  # static: rows from the training data (else random inputs)
    # kept in fp32: ONNX node names (onnx_int8), Linear layer names (pretrained_int8: lm_head)
    exclude: list[str] = []
    per_channel: bool = True
    reduce_range: bool | None = None  # 7-bit weights; default: unless the CPU has VNNI
    max_accuracy_drop: float = Field(
        default=1.0, ge=0
    )  # points of accuracy (or top-1 agreement with fp32)
    max_relative_error: float = Field(
        default=0.05, gt=0
    )  # models that are not classifiers: outputs vs fp32
    # language models (`pretrained_int8`): the gate against fp32 on held-out text; None: the
    # defaults below (unset, left out of the records)
    texts: str | None = None  # module:function returning held-out texts (a list of str)
    max_perplexity_ratio: float | None = Field(default=None, ge=1)  # held-out, int8 / fp32
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)  # teacher-forced
    min_greedy_agreement: float | None = Field(default=None, ge=0, le=1)  # golden prompts
    # serve int8 although the gate cannot judge quality (random weights, or no texts)
    allow_unjudged: bool | None = None

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_unset(handler(self), LANGUAGE_GATE)

    @property
    def language_gate(self) -> dict[str, Any]:
        """The language-model gate's thresholds, defaults filled in."""
        given = {name: getattr(self, name) for name in LANGUAGE_GATE}
        return {**LANGUAGE_GATE_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}


LANGUAGE_GATE_DEFAULTS: dict[str, Any] = {
    "texts": None,
    "max_perplexity_ratio": 1.02,
    "min_top1_agreement": 0.98,
    "min_greedy_agreement": 0.5,
    "allow_unjudged": False,
}
LANGUAGE_GATE = tuple(LANGUAGE_GATE_DEFAULTS)


class Monitoring(StrictModel):
    """What the alert rules `make monitor` generates fire on, per model and runtime."""

    model_p99_ms: float = Field(default=1000, gt=0)  # p99 of one executed batch's model time
    max_error_ratio: float = Field(
        default=0.01, ge=0, le=1
    )  # 5xx (our bugs) per request, over 5 min
    max_rejected_per_s: float = Field(
        default=5, ge=0
    )  # 4xx (clients' mistakes) per second, over 5 min
    ttft_p99_ms: float = Field(default=2000, gt=0)  # generation: p99 time to first token


class Tolerance(StrictModel):
    atol: float = Field(default=1e-5, ge=0)
    rtol: float = Field(default=1e-4, ge=0)
