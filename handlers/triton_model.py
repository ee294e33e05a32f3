"""Triton Python-backend `model.py` for every model of the spec, in one of three roles.

The role comes from the `role` parameter of config.pbtxt:
- `model`: the exported model (onnxruntime or TorchScript via handlers.runners). All requests of
  one execute() call are stacked into one batch, run once and split back.
- `preprocess`: encoded image bytes / UTF-8 text (TYPE_BYTES) -> model-input rows.
- `postprocess`: model-output rows -> label (BYTES) and score (FP32).
All logic is handlers.pipeline's and handlers.base_handler's, shared with TorchServe. A bad
request gets an INVALID_ARG error of its own; execute() never raises, so the other requests of
the batch still get their answers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
# The Python-backend stub runs isolated (PYTHONPATH is ignored): the build copies the
# `handlers/` package next to this file, so make that importable first.
if (HERE / "handlers").is_dir() and str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from handlers.base_handler import Prepared, SpecHandlerBase, guarded  # noqa: E402
from handlers.pipeline import Pipeline  # noqa: E402
from handlers.plan import ServingPlan  # noqa: E402

ROLES = ("model", "preprocess", "postprocess")


def parameter(model_config: dict, key: str, default: str) -> str:
    return model_config.get("parameters", {}).get(key, {}).get("string_value", default)


def error_response(message: str, internal: bool = False):
    code = pb_utils.TritonError.INTERNAL if internal else pb_utils.TritonError.INVALID_ARG
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def as_text_rows(array: np.ndarray) -> list:
    """A BYTES tensor [B, 1] (np.object_) -> B items (bytes or str)."""
    return list(np.asarray(array, dtype=np.object_).reshape(-1))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        model_config = json.loads(args["model_config"])
        self.role = parameter(model_config, "role", "model")
        if self.role not in ROLES:
            raise ValueError(f"config.pbtxt parameter role={self.role!r}; expected one of {ROLES}")
        # Triton tensor names can differ from the spec's (libtorch naming); config.pbtxt's
        # inputs/outputs are in the spec's order.
        self.input_names = [t["name"] for t in model_config["input"]]
        self.output_names = [t["name"] for t in model_config["output"]]
        self.handler = SpecHandlerBase()
        if self.role == "model":  # loads the serving plan and the artifact, like TorchServe
            self.handler.initialize(SimpleNamespace(system_properties={"model_dir": str(HERE)}))
        else:
            self.handler.plan = ServingPlan.load(HERE)
            self.handler.pipeline = Pipeline(self.handler.plan)
        self.plan = self.handler.plan
        self.pipeline = self.handler.pipeline
        self.produced = self.pipeline.kind.produces(self.plan.inputs)  # what the preprocess role outputs
        self.dtypes = self.output_dtypes()

    def execute(self, requests: list) -> list:
        step = {"model": self.run_model, "preprocess": self.preprocess, "postprocess": self.postprocess}[self.role]
        return step(requests)

    # --- role: model ------------------------------------------------------------------------------

    def run_model(self, requests: list) -> list:
        prepared = [self.read_request(r) for r in requests]
        self.handler.inference(prepared)  # one stacked call; isolates a failing request
        return [self.respond(p, p.outputs) for p in prepared]

    def read_request(self, request) -> Prepared:
        """Triton has checked dtype and shape against config.pbtxt; the pipeline adds the
        spec's checks (value range, finiteness) and maps Triton names to the spec's."""
        def read() -> Prepared:
            return Prepared(self.pipeline.check_mask({tensor.name: self.pipeline.check_rows(
                tensor, pb_utils.get_input_tensor_by_name(request, name).as_numpy())
                for tensor, name in zip(self.plan.inputs, self.input_names)}), single=False)

        return guarded("reading the request", read)

    # --- role: preprocess -------------------------------------------------------------------------

    def preprocess(self, requests: list) -> list:
        def decode(request) -> Prepared:
            items = as_text_rows(pb_utils.get_input_tensor_by_name(request, self.input_names[0]).as_numpy())
            rows = self.pipeline.kind.decode_items(items, self.plan.inputs, self.pipeline.max_batch)
            return Prepared(outputs=[rows[t.name] for t in self.produced])

        return [self.respond(p, p.outputs) for p in (guarded("pre-processing", lambda: decode(r)) for r in requests)]

    # --- role: postprocess ------------------------------------------------------------------------

    def postprocess(self, requests: list) -> list:
        def answer(request) -> Prepared:
            outputs = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.input_names]
            answers = self.pipeline.postprocess(outputs)
            labels = np.array([[a["label"].encode("utf-8")] for a in answers], dtype=np.object_)
            scores = np.array([[a["score"]] for a in answers], dtype=np.float32)
            return Prepared(outputs=[labels, scores])

        return [self.respond(p, p.outputs) for p in (guarded("post-processing", lambda: answer(r)) for r in requests)]

    # --- answers ----------------------------------------------------------------------------------

    def respond(self, prepared: Prepared, outputs: list[np.ndarray]):
        if prepared.error is not None:
            code, message = prepared.error
            return error_response(message, internal=code >= 500)
        dtypes = self.dtypes
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(name, np.asarray(o, dtype=dtype)) for name, o, dtype in zip(self.output_names, outputs, dtypes)])

    def output_dtypes(self) -> list:
        if self.role == "model":
            return [t.numpy for t in self.plan.outputs]
        if self.role == "preprocess":
            return [t.numpy for t in self.produced]
        return [np.object_, np.float32]

    def finalize(self) -> None:
        self.handler = None
