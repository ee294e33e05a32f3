"""A small base on TorchServe's handler contract: initialize / preprocess / inference / postprocess.

Reads everything from the serving plan (`serving_plan.json`) shipped in the archive. A batch of N requests
becomes one tensor of N rows (more if a request carries several examples) and N answers in
order. A bad request gets a 4xx with a JSON body naming the problem, and the other requests
of the batch still get their answers: nothing a client sends can kill the worker.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from handlers import kserve_protocol
from handlers.kserve_protocol import Envelope
from handlers.pipeline import Pipeline
from handlers.plan import ServingPlan
from handlers.processing import RequestError
from handlers.runners import load_runner

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One request after pre-processing: its model-input rows, or the error to answer with."""
    inputs: dict[str, np.ndarray] | None = None
    single: bool = True
    error: tuple[int, str] | None = None
    outputs: list[np.ndarray] = field(default_factory=list)
    envelope: Envelope | None = None   # a KServe v1/v2 request is answered in its protocol
    answer: str = ""


def guarded(stage: str, work: Callable[[], Prepared]) -> Prepared:
    """Run one request's step: a client mistake becomes a 400, anything else (a bug of ours,
    not the client's) a 500 naming the stage; either way only this request fails."""
    try:
        return work()
    except RequestError as exc:
        return Prepared(error=(400, str(exc)))
    except Exception as exc:
        log.exception("%s failed", stage)
        return Prepared(error=(500, f"{stage} failed: {type(exc).__name__}: {exc}"))


class SpecHandlerBase:
    def __init__(self):
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        self.plan = ServingPlan.load(model_dir)
        self.pipeline = Pipeline(self.plan)
        threads = int(os.environ.get("TORCHSHIP_THREADS", self.plan.serving.threads))
        self.model = load_runner(self.plan.format, model_dir / self.plan.artifact, self.plan.input_names, threads,
                                 self.plan.output_names)
        self.initialized = True
        log.info("loaded %s v%s (%s, %d thread(s))", self.plan.name, self.plan.version, self.plan.format, threads)

    def handle(self, data: list[dict], context) -> list:
        log.info("batch of %d request(s)", len(data))  # shows server-side batching in model_log
        prepared = self.preprocess(data, context)
        self.inference(prepared)
        return self.postprocess(prepared, context)

    def preprocess(self, data: list[dict], context) -> list[Prepared]:
        def parse(idx: int, request: dict) -> Prepared:
            inputs, single, envelope = self.pipeline.parse_request(request_body(request), content_type(context, idx))
            return Prepared(inputs, single, envelope=envelope)

        return [guarded("pre-processing", lambda: parse(idx, request)) for idx, request in enumerate(data)]

    def inference(self, prepared: list[Prepared]) -> None:
        """One model call for the whole batch; if it fails, each request alone so that one
        bad request cannot take the others down."""
        good = [p for p in prepared if p.error is None]
        if not good:
            return
        try:
            self.run_together(good)
        except Exception:  # the model raised on the stacked batch: isolate the culprit
            log.exception("batched inference failed; retrying request by request")
            for p in good:
                try:
                    self.run_together([p])
                except Exception as exc:
                    p.error = (500, f"inference failed: {type(exc).__name__}: {exc}")

    def run_together(self, prepared: list[Prepared]) -> None:
        """Requests whose rows have the same shape run as one batch; a dynamic non-batch axis
        (sequence length) makes one batch per length, never a ragged stack."""
        groups: dict[tuple, list[Prepared]] = {}
        for p in prepared:
            # never-batched models (max_batch_size 0): one call per request; padded ones: one batch
            key = id(p) if self.pipeline.whole_outputs else (
                () if self.plan.batching.pad else tuple(p.inputs[n].shape[1:] for n in self.plan.input_names))
            groups.setdefault(key, []).append(p)
        for group in groups.values():
            self.run_stacked(group)

    def run_stacked(self, prepared: list[Prepared]) -> None:
        names = self.plan.input_names
        stacked = {n: stack_rows([p.inputs[n] for p in prepared], self.pad_value(n)) for n in names}
        outputs = self.model(stacked)
        if len(prepared) == 1:  # whole: an output's length may not follow the input's rows
            prepared[0].outputs = outputs
            return
        start = 0
        for p in prepared:
            rows = len(p.inputs[names[0]])
            p.outputs = [o[start:start + rows] for o in outputs]
            start += rows

    def pad_value(self, name: str) -> float:
        pad = self.plan.batching.pad
        return 0 if pad is None or pad.mask == name else pad.value

    def postprocess(self, prepared: list[Prepared], context) -> list:
        responses = []
        for idx, p in enumerate(prepared):
            context.set_response_content_type(idx, "application/json")
            if p.error is None:
                p = guarded("post-processing", lambda: self.answer(p))
            if p.error is not None:
                code, message = p.error
                context.set_response_status(code, "Bad Request" if code < 500 else "Internal Server Error", idx)
                # "error" is where KServe's protocols put the message; the rest is ours
                responses.append(json.dumps({"code": code, "type": "InvalidInput" if code < 500 else "InferenceError",
                                             "message": message, "error": message}))
                continue
            responses.append(p.answer)
        return responses

    def answer(self, p: Prepared) -> Prepared:
        """The JSON answer of one request, in the protocol it came in."""
        answers = self.pipeline.postprocess(p.outputs)
        if p.envelope is not None:
            p.answer = json.dumps(kserve_protocol.answer(self.plan, p.envelope, p.outputs, answers))
        else:
            p.answer = json.dumps(answers[0] if p.single else answers)
        return p


def stack_rows(parts: list[np.ndarray], pad_value: float) -> np.ndarray:
    """Rows of several requests as one batch; rows shorter on a non-batch axis are padded at the
    end (only reached with the spec's batching.pad: unpadded groups share one shape)."""
    if len(parts) == 1:
        return parts[0]
    shape = np.max([p.shape for p in parts], axis=0)
    padded = [np.pad(p, [(0, 0)] + [(0, int(s - n)) for s, n in zip(shape[1:], p.shape[1:])],
                     constant_values=pad_value) if tuple(p.shape[1:]) != tuple(shape[1:]) else p for p in parts]
    return np.concatenate(padded)


def request_body(request: dict):
    """TorchServe puts a raw POST body under "body" (or "data" for form uploads)."""
    for key in ("body", "data"):
        if request.get(key) is not None:
            return request[key]
    return next(iter(request.values()), None) if request else None


def content_type(context, idx: int) -> str | None:
    headers = context.get_all_request_header(idx) or {}
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if value and value.split(";")[0].strip().lower() == "multipart/form-data":
        # A form upload (curl -F, perf_analyzer --service-kind torchserve): TorchServe hands the
        # field's bytes as "data" and the field's own type as headers[field]["content-type"]
        # (often empty, which means: sniff JSON, else the model's encoded input).
        part = next((headers[k] for k in ("data", "body") if isinstance(headers.get(k), dict)), {})
        return part.get("content-type") or ""
    return value
