"""One model's request pipeline, shared by the TorchServe handler and Triton's Python models.

Configured by the serving plan the build ships into every archive and repository. Turns a
request payload into model-input rows, checks them, and turns output rows into answers. What
depends on the pre-processing kind is the kind's (handlers/preprocessing/kinds.py). Every client
mistake
raises RequestError with a message naming the problem and the expected input.
"""

from __future__ import annotations

import json
from typing import Any

from numpy.typing import NDArray

from handlers.protocols import kserve
from handlers.protocols.base import is_json_object
from handlers.protocols.kserve import Envelope
from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError
from handlers.preprocessing.tensors import TensorSpec, check_rows, numeric_array

FORM = "application/x-www-form-urlencoded"
JSON_KEYS = {"inputs", "tensors"}  # our own JSON; KServe's v1/v2 bodies are told apart first


def looks_like_json_object(body: Any) -> bool:
    head = body[:64].lstrip() if isinstance(body, (bytes, bytearray, str)) else ""
    return head[:1] in ("{", b"{")


def as_bytes(body: Any) -> bytes:
    return body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)


class Pipeline:
    def __init__(self, plan: ServingPlan):
        self.plan = plan
        self.inputs = plan.inputs
        self.kind = plan.kind()
        self.max_batch = plan.batching.max_batch_size

    @property
    def whole_outputs(self) -> bool:
        """A model the runtimes never batch (max_batch_size 0) answers each request with its
        outputs as they are: their first axis need not be one row per example (an output whose
        length depends on the input). Classifiers still label row by row."""
        return self.max_batch == 0 and not self.plan.task.serving.labelled

    @property
    def expected_input(self) -> str:
        """What a client should send, for error messages."""
        return self.kind.expected_input(self.inputs, batched=self.max_batch > 0)

    # --- requests -> model input rows ----------------------------------------------------------

    def parse(self, body: Any, content_type: str | None) -> tuple[dict[str, NDArray[Any]], bool]:
        """One request -> ({input name: rows}, single). `single` means the request held one
        example (answer with one object) rather than a list of them (answer with a list)."""
        inputs, single, _ = self.parse_request(body, content_type)
        return inputs, single

    def parse_request(
        self, body: Any, content_type: str | None
    ) -> tuple[dict[str, NDArray[Any]], bool, Envelope | None]:
        """parse(), and the KServe protocol (v1/v2) the request used, if any, to answer in it."""
        try:
            inputs, single, envelope = self._parse(
                body, (content_type or "").split(";")[0].strip().lower()
            )
            return inputs, single or self.whole_outputs, envelope
        except RequestError as exc:
            if "send " in str(exc) or "KServe" in str(exc):
                raise
            raise RequestError(f"{exc}; send {self.expected_input}", exc.reason) from None

    def _parse(
        self, body: Any, content_type: str
    ) -> tuple[dict[str, NDArray[Any]], bool, Envelope | None]:
        if (
            content_type == FORM
        ):  # TorchServe decodes such a body as form fields: nothing usable is left
            raise RequestError(
                f"Content-Type {FORM} (curl -d's default) makes TorchServe decode the body "
                "as a form; "
                f"send {self.expected_input} with Content-Type: application/json "
                "(curl -H 'Content-Type: application/json')"
            )
        if body is None or (isinstance(body, (bytes, bytearray, str)) and len(body) == 0):
            raise RequestError(f"empty body: send {self.expected_input}")
        if (
            isinstance(body, (dict, list))
            or content_type == "application/json"
            or (content_type == "" and looks_like_json_object(body))
        ):
            # gRPC carries no Content-Type: a body that opens with "{" is taken as JSON there.
            return self.parse_json(body)
        if self.kind.accepts(content_type):
            item = body if isinstance(body, str) else as_bytes(body)
            return self.kind.decode_items([item], self.inputs, self.max_batch), True, None
        if content_type == "":  # no content type: JSON is the one format every model takes
            return self.parse_json(body)
        raise RequestError(f"unsupported Content-Type {content_type!r}: send {self.expected_input}")

    def parse_json(self, body: Any) -> tuple[dict[str, NDArray[Any]], bool, Envelope | None]:
        if isinstance(body, (bytes, bytearray, str)):
            try:
                body = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
                raise RequestError(
                    f"body is not valid JSON ({reason}); send {self.expected_input}", "decode"
                ) from None
        protocol = kserve.protocol_of(body) if is_json_object(body) else None
        if protocol is not None:  # KServe v1 / v2: answered in the same protocol
            parse = kserve.parse_v1 if protocol == kserve.V1 else kserve.parse_v2
            try:
                inputs, envelope = parse(self, body)
            except RequestError as exc:  # named as the protocol's problem, not our own JSON's
                message = str(exc)
                named = message if "KServe" in message else f"KServe {protocol} request: {message}"
                raise RequestError(named, exc.reason) from None
            return inputs, False, envelope
        if is_json_object(body):
            unknown = sorted(set(body) - JSON_KEYS)
            if unknown or len(body) != 1:
                raise RequestError(
                    f"JSON body needs exactly one of the keys {sorted(JSON_KEYS)}"
                    + (f"; unknown key(s) {unknown}" if unknown else "")
                )
            if "tensors" in body:
                return *self.parse_tensors(body["tensors"]), None
            body = body["inputs"]
        if len(self.inputs) > 1 and is_json_object(body):
            return *self.parse_tensors(body), None
        return *self.kind.json_inputs(body, self.inputs, self.max_batch), None

    def parse_tensors(self, tensors: Any) -> tuple[dict[str, NDArray[Any]], bool]:
        """Model-input tensors given directly (no pre-processing), e.g. golden samples."""
        names = [t.name for t in self.inputs]
        if not is_json_object(tensors) or set(tensors) != set(names):
            raise RequestError(f'"tensors" must map every input name {names} to an array')
        out: dict[str, NDArray[Any]] = {}
        singles: set[bool] = set()
        for t in self.inputs:
            rows = numeric_array(tensors[t.name], t.name, t.numpy)
            # a batched model's one example may come without the batch axis
            single = self.max_batch > 0 and rows.ndim == len(t.shape) - 1
            singles.add(single)
            out[t.name] = self.check_rows(t, rows[None] if single else rows)
        if len(singles) > 1:
            raise RequestError(
                "send every input as one example (without the batch axis) or every input as "
                "a list of examples, not a mix"
            )
        return self.check_mask(out), singles == {True}

    def check_mask(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """The spec's mask input (batching.pad.mask) must have the shape of every input with a
        dynamic non-batch axis: it says which of their positions are real."""
        pad = self.plan.batching.pad
        if pad is None or pad.mask is None:
            return inputs
        mask = inputs[pad.mask]
        for t in self.inputs:
            if t.name != pad.mask and -1 in t.shape[1:] and inputs[t.name].shape != mask.shape:
                raise RequestError(
                    f"{pad.mask} must have the shape of {t.name}: {list(inputs[t.name].shape)}, "
                    f"got {list(mask.shape)}"
                )
        return inputs

    def check_rows(self, tensor: TensorSpec, rows: NDArray[Any]) -> NDArray[Any]:
        return check_rows(tensor, rows, self.max_batch)

    # --- model output rows -> answers ------------------------------------------------------------

    def postprocess(self, outputs: list[NDArray[Any]]) -> list[dict[str, Any]]:
        """Output rows of one request -> one answer per example: the raw outputs, plus label and
        score for classification."""
        task = self.plan.task
        if self.whole_outputs:
            return [{"outputs": {t.name: o.tolist() for t, o in zip(self.plan.outputs, outputs)}}]
        answers = [
            {"outputs": {t.name: o[i].tolist() for t, o in zip(self.plan.outputs, outputs)}}
            for i in range(len(outputs[0]))
        ]
        task.serving.label(answers, outputs, task)
        return answers
