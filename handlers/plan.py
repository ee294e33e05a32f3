"""The serving plan: everything a server needs to know about one model, typed.

Computed once per model at build time (scripts/pipeline/plan.py) from the spec entry and the
exported artifact, written as `serving_plan.json` into every `.mar` and every Triton model
directory, and loaded back by the handlers as this type. Labels and the pre-processing kind's
assets are inlined, so a server reads no other file, and the plan's content is what every
runtime artifact's fingerprint is taken over.

The spec (scripts/spec) reuses the sections defined here, so a field has one definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from handlers.preprocessing.kinds import Kind, Preprocess
from handlers.formats import FORMAT_NAMES, format_of
from handlers.tasks import ServingTask, TaskKind, serving_task
from handlers.preprocessing.tensors import TensorSpec

PLAN_FILE = "serving_plan.json"
if TYPE_CHECKING:  # names read from the registry at run time: a str to a type checker
    Format = str
else:
    Format = Literal[FORMAT_NAMES]  # the registry's names (handlers/formats/)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Padding(StrictModel):
    """How requests of different lengths on a dynamic axis become one batch: padded at the end
    to the longest with `value`; the `mask` input (if any) padded with 0."""

    value: float = 0
    mask: str | None = None


class Batching(StrictModel):
    max_batch_size: int = Field(8, ge=0)  # 0: the runtime never batches requests
    max_queue_delay_ms: float = Field(5.0, ge=0)
    # False: the runtime hands each request to the model as it came, never gathering a batch
    # (one client skips Triton's batcher and TorchServe's batch delay; many clients lose the
    # batches: docs/performance.md); a request may still carry up to max_batch_size rows
    dynamic: bool = True
    preferred_batch_sizes: list[int] = []
    pad: Padding | None = None  # without it, requests batch only with others of the same shape
    # requests that may wait for the model beyond those it runs; more are refused at once
    # (429 / UNAVAILABLE) instead of queueing without bound
    max_waiting: int = Field(128, ge=1)
    # generation: the tokens one decode step may run, one per running sequence plus the prompts
    # prefilled beside them; a longer prompt is prefilled in chunks over several steps, so the
    # running sequences keep their inter-token latency (vLLM's max_num_batched_tokens)
    max_batched_tokens: int = Field(256, ge=2)
    # generation: while sequences decode, the chunks of a prompt too long to join whole take
    # at most about this share of a decode step (measured), so a long prompt joining keeps
    # their inter-token latency within about (1 + share) x its own; 0: the token budget alone
    # (long prompts' first tokens sooner, the running streams stall meanwhile)
    prefill_share: float = Field(0.8, ge=0, le=100)


class Workers(StrictModel):
    min: int = Field(default=1, ge=1)
    max: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Workers:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Serving(StrictModel):
    format: Format = "torchscript"  # which exported format the servers load
    workers: Workers = Workers()  # TorchServe workers
    instances: int = Field(1, ge=1)  # Triton instance_group count
    threads: int = Field(1, ge=1)  # intra-op threads per TorchServe worker / Triton instance
    response_timeout_s: int = Field(120, gt=0)
    startup_timeout_s: int = Field(120, gt=0)


class Draft(StrictModel):
    """Speculative decoding (handlers/engines/speculative.py): another version of the same
    model (its tokenizer), smaller, proposes tokens that this one verifies in one forward."""

    version: int = Field(ge=1)  # the model's version that drafts (a distilled student)
    tokens: int = Field(4, ge=1, le=16)  # the most it proposes per step (adapts to acceptance)
    # more sequences decoding than this: plain decoding (verifying k + 1 tokens per sequence
    # costs more than it saves once a step's forward is compute-bound)
    max_batch: int = Field(4, ge=1)
    format: Format | None = None  # its served format: the draft version's (filled at build)


class Generation(StrictModel):
    """A generation model's request defaults and hard limits (spec: task.generation). The
    context length and the end token are the model's own, read from its config at build time."""

    max_tokens: int = Field(32, gt=0)  # new tokens when a request does not say
    max_tokens_limit: int = Field(128, gt=0)  # the most a request may ask for
    temperature: float = Field(0.0, ge=0)  # 0: greedy
    top_k: int = Field(0, ge=0)  # 0: every token
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] = []
    max_stop_strings: int = Field(4, ge=0)  # a request's stop strings: how many (OpenAI's 4)
    max_stop_chars: int = Field(256, gt=0)  # and how long each may be
    # a prompt's UTF-8 bytes, checked before tokenizing; None: 32 bytes per context token
    max_prompt_bytes: int | None = Field(None, gt=0)
    context_length: int | None = None  # prompt + new tokens; from the model when None
    # prompt prefixes' keys and values kept for later prompts that start alike (0: none)
    prefix_cache_mb: int = Field(64, ge=0)
    end_token: int | None = None  # from the model's config when None
    draft: Draft | None = None  # speculative decoding with a draft version (None: none)

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without `draft` when unset: plans and fingerprints of models without one stay
        what they were before it existed."""
        data = handler(self)
        return {k: v for k, v in data.items() if not (k == "draft" and v is None)}

    @model_validator(mode="after")
    def _default_within_limit(self) -> Generation:
        if self.max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) is over max_tokens_limit "
                f"({self.max_tokens_limit}); lower it or raise the limit"
            )
        return self


KIND_FIELDS = ("generation", "embedding_output", "normalize")


class TaskPlan(StrictModel):
    kind: TaskKind
    output: Literal["logits", "probabilities"] = "logits"
    top_k: int = 1
    labels: list[str] = []
    generation: Generation | None = None  # generation: request defaults and limits
    embedding_output: str | None = None  # embedding: the output that is the vector (else the first)
    normalize: bool | None = None  # embedding: answers' vectors L2-normalised

    @model_serializer(mode="wrap")
    def _recorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without the kinds' own fields when unset: plans (and the fingerprints taken over
        them) of other models stay what they were before those fields existed."""
        data = handler(self)
        return {k: v for k, v in data.items() if not (k in KIND_FIELDS and v is None)}

    @property
    def serving(self) -> ServingTask:
        return serving_task(self.kind)


class ServingPlan(StrictModel):
    name: str
    version: int
    format: Format  # what this artifact's runner loads
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    task: TaskPlan
    preprocess: Preprocess
    assets: dict[str, Any] = {}  # the pre-processing kind's inlined assets
    batching: Batching
    serving: Serving

    @property
    def artifact(self) -> str:
        return format_of(self.format).file

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def kind(self) -> Kind:
        """The pre-processing kind, ready to decode requests."""
        self.preprocess.prepare(self.assets)
        return self.preprocess

    def save(self, folder: Path) -> Path:
        path = folder / PLAN_FILE
        # utf-8 always: Triton's Python-backend stub runs with an ASCII locale
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> ServingPlan:
        return cls.model_validate_json((folder / PLAN_FILE).read_text(encoding="utf-8"))

    def with_format(self, fmt: str) -> ServingPlan:
        return self.model_copy(update={"format": fmt})
