"""Rows of many requests through one model call, each request isolated from the others.

Runtime-neutral: the serving core (handlers/engines/serving_core.py) drives it for TorchServe and
for
Triton's tensor model alike. A request's rows carry their own failure, so one bad request (or
one the model cannot run) never takes the others of its batch down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
from numpy.typing import NDArray

from handlers.protocols.base import ForwardWriter
from handlers.protocols.kserve import Envelope
from handlers.metrics import ModelMetrics
from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError
from handlers.runners import Runner

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """Why one request gets no answer: 4xx for the client's mistake, 5xx for ours."""

    status: int
    message: str
    reason: str = ""  # 4xx: RequestError's reason (metrics); 5xx: the stage that failed


@dataclass
class Rows:
    """One request on its way through the model: its input rows, then its output rows, or the
    failure to answer with instead."""

    inputs: dict[str, NDArray[Any]] = field(default_factory=dict[str, NDArray[Any]])
    single: bool = True  # one example sent (answer one object), not a list
    envelope: Envelope | None = None  # a KServe v1/v2 request is answered in its protocol
    writer: ForwardWriter | None = None  # a request on a protocol's route is answered in it
    outputs: list[NDArray[Any]] = field(default_factory=list[NDArray[Any]])
    failure: Failure | None = None


def isolated(stage: str, work: Callable[[], T]) -> T | Failure:
    """Run one request's step: a client mistake becomes a 400, anything else (a bug of ours,
    not the client's) a 500 naming the stage; either way only this request fails."""
    try:
        return work()
    except RequestError as exc:
        return Failure(exc.status, str(exc), exc.reason)
    except Exception as exc:
        log.exception("%s failed", stage)
        return Failure(500, f"{stage} failed: {type(exc).__name__}: {exc}", stage)


def model_failure(exc: Exception) -> Failure:
    """The model raised on one request's rows: a 500 of ours, naming the error."""
    return Failure(500, f"inference failed: {type(exc).__name__}: {exc}", "model")


class Batcher:
    """Requests' rows -> as few model calls as their shapes allow -> each request's outputs."""

    def __init__(
        self, plan: ServingPlan, model: Runner, whole_outputs: bool, metrics: ModelMetrics
    ):
        self.plan = plan
        self.model = model
        self.whole_outputs = whole_outputs  # max_batch_size 0: never stacked, outputs as they are
        self.metrics = metrics

    def run(self, rows: list[Rows]) -> None:
        """One model call for the whole batch; if it fails, each request alone so that one
        bad request cannot take the others down."""
        good = [r for r in rows if r.failure is None]
        if not good:
            return
        try:
            self.run_together(good)
        except Exception:  # the model raised on the stacked batch: isolate the culprit
            log.exception("batched inference failed; retrying request by request")
            for r in good:
                try:
                    self.run_together([r])
                except Exception as exc:
                    r.failure = model_failure(exc)

    def run_together(self, rows: list[Rows]) -> None:
        """Requests whose rows have the same shape run as one batch; a dynamic non-batch axis
        (sequence length) makes one batch per length, never a ragged stack."""
        names = self.plan.input_names
        groups: dict[object, list[Rows]] = {}
        for r in rows:
            # never-batched models: one call per request; padded ones: one batch
            if self.whole_outputs:
                key: object = id(r)
            elif self.plan.batching.pad:
                key = ()
            else:
                key = tuple(r.inputs[n].shape[1:] for n in names)
            groups.setdefault(key, []).append(r)
        for group in groups.values():
            self.run_stacked(group)

    def run_stacked(self, rows: list[Rows]) -> None:
        names = self.plan.input_names
        batch = {n: stack_rows([r.inputs[n] for r in rows], self.pad_value(n)) for n in names}
        with self.metrics.timed("model"):
            outputs = self.model(batch)
        self.metrics.batch(1 if self.whole_outputs else len(batch[names[0]]))
        if len(rows) == 1:  # whole: an output's length may not follow the input's rows
            rows[0].outputs = outputs
            return
        start = 0
        for r in rows:
            count = len(r.inputs[names[0]])
            r.outputs = [o[start : start + count] for o in outputs]
            start += count

    def pad_value(self, name: str) -> float:
        pad = self.plan.batching.pad
        return 0 if pad is None or pad.mask == name else pad.value


def stack_rows(parts: list[NDArray[Any]], pad_value: float) -> NDArray[Any]:
    """Rows of several requests as one batch; rows shorter on a non-batch axis are padded at the
    end (only reached with the spec's batching.pad: unpadded groups share one shape)."""
    if len(parts) == 1:
        return parts[0]
    shape = np.max([p.shape for p in parts], axis=0)
    padded = [
        np.pad(
            p,
            [(0, 0)] + [(0, int(s - n)) for s, n in zip(shape[1:], p.shape[1:])],
            constant_values=pad_value,
        )
        if tuple(p.shape[1:]) != tuple(shape[1:])
        else p
        for p in parts
    ]
    return np.concatenate(padded)
