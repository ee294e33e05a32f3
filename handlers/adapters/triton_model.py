"""Triton Python-backend `model.py` for every model of the spec, in one of three roles.

The role comes from the `role` parameter of config.pbtxt:
- `model`: the exported model, served by the serving core (handlers/engines/serving_core.py): all
  requests of one execute() call are stacked into one batch, run once and split back.
- `preprocess`: encoded image bytes / UTF-8 text (TYPE_BYTES) -> model-input rows.
- `postprocess`: model-output rows -> label (BYTES) and score (FP32).
All logic is handlers.engines.serving_core's and handlers.preprocessing.pipeline's, shared with
TorchServe. A bad
request gets an INVALID_ARG error of its own, a bug of ours INTERNAL; execute() never raises,
so the other requests of the batch still get their answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The Python-backend stub runs isolated (PYTHONPATH is ignored): the build copies the
# `handlers/` package next to this file, so make that importable first.
if (HERE / "handlers").is_dir() and str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import triton_python_backend_utils as pb_utils  # pyright: ignore[reportMissingModuleSource]  # noqa: E402

from handlers.engines.batching import Failure, isolated  # noqa: E402
from handlers.metrics import DIRECT, ModelMetrics  # noqa: E402
from handlers.preprocessing.pipeline import Pipeline  # noqa: E402
from handlers.plan import ServingPlan  # noqa: E402
from handlers.engines.serving_core import Answer, Request, ServingCore  # noqa: E402
from handlers.engines.forward import Forward  # noqa: E402
from handlers.adapters.triton_metrics import TritonSink, client_of  # noqa: E402
from handlers.adapters.triton_streamer import Streamer, error_response  # noqa: E402

ROLES = ("model", "preprocess", "postprocess")


def parameter(model_config: dict[str, Any], key: str, default: str) -> str:
    return model_config.get("parameters", {}).get(key, {}).get("string_value", default)


def input_array(request: pb_utils.InferenceRequest, name: str) -> npt.NDArray[Any]:
    """One input of a request (its config makes every input required: Triton checks it sent)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:  # not a KeyError: a Mapping's get() would take it for "absent"
        raise LookupError(f"the request has no input {name!r}")
    return tensor.as_numpy()


def as_text_rows(array: npt.NDArray[Any]) -> list[bytes | str]:
    """A BYTES tensor [B, 1] (np.object_) -> B items (bytes or str)."""
    return list(np.asarray(array, dtype=np.object_).reshape(-1))


class InputTensors(Mapping[str, npt.NDArray[Any]]):
    """A Triton request's inputs by the spec's names, read when the core asks for them (inside
    its per-request isolation). Triton's names can differ from the spec's (libtorch naming)."""

    def __init__(self, request: pb_utils.InferenceRequest, names: dict[str, str]):
        self.request, self.names = request, names

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return input_array(self.request, self.names[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        model_config = json.loads(args["model_config"])
        self.role = parameter(model_config, "role", "model")
        if self.role not in ROLES:
            raise ValueError(f"config.pbtxt parameter role={self.role!r}; expected one of {ROLES}")
        # config.pbtxt's inputs/outputs are in the spec's order, under Triton's names
        self.input_names = [t["name"] for t in model_config["input"]]
        self.output_names = [t["name"] for t in model_config["output"]]
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(model_config)
        self.streamer: Streamer | None = None
        if self.role == "model":  # loads the serving plan and the artifact, like TorchServe
            self.ENGINES[ServingPlan.load(HERE).task.serving.engine](self)
            return
        self.plan = ServingPlan.load(HERE)
        self.pipeline = Pipeline(self.plan)
        self.metrics = ModelMetrics(self.plan.name, self.plan.version, TritonSink())
        self.metrics.loaded()
        self.produced = self.pipeline.kind.produces(self.plan.inputs)  # what preprocess outputs
        self.dtypes = self.output_dtypes()

    def start_forward(self) -> None:
        self.core = ServingCore.load(HERE, TritonSink())
        self.forward: Forward[int] = Forward(self.core)
        self.plan, self.pipeline = self.core.plan, self.core.pipeline
        self.metrics = self.core.metrics
        self.produced = self.pipeline.kind.produces(self.plan.inputs)
        self.dtypes = self.output_dtypes()
        self.triton_names = dict(zip(self.plan.input_names, self.input_names))

    def start_decoding(self) -> None:
        self.streamer = Streamer(HERE)  # decoupled: its own thread answers

    # the serving task's engine (handlers/tasks.py) -> how this model starts it
    ENGINES = {"forward": start_forward, "generate": start_decoding}

    def execute(
        self, requests: list[pb_utils.InferenceRequest]
    ) -> list[pb_utils.InferenceResponse] | None:
        if self.streamer is not None:  # decoupled: the streamer's thread answers
            for request in requests:
                self.streamer.admit(request)
            return None
        step = {
            "model": self.run_model,
            "preprocess": self.preprocess,
            "postprocess": self.postprocess,
        }[self.role]
        return step(requests)

    # --- role: model ----------------------------------------------------------------------

    def run_model(
        self, requests: list[pb_utils.InferenceRequest]
    ) -> list[pb_utils.InferenceResponse] | None:
        names = self.triton_names
        if len(requests) == 1:  # alone (low load): straight to the core's lean path
            request = requests[0]
            alone = self.forward.core.answer_alone(InputTensors(request, names), client_of(request))
            responses = [self.respond(alone)]
        else:
            for index, request in enumerate(requests):
                tensors = InputTensors(request, names)
                self.forward.admit(index, Request(tensors=tensors, client=client_of(request)))
            answers = self.forward.step()
            responses = [self.respond(answers[index]) for index in range(len(requests))]
        if not self.decoupled:
            return responses
        # decoupled: each request's one response through its sender, flagged final
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        for request, response in zip(requests, responses):
            request.get_response_sender().send(response, flags=final)
        return None

    # --- role: preprocess -----------------------------------------------------------------

    def preprocess(
        self, requests: list[pb_utils.InferenceRequest]
    ) -> list[pb_utils.InferenceResponse]:
        def decode(request: pb_utils.InferenceRequest) -> Answer:
            tensor = input_array(request, self.input_names[0])
            rows = self.pipeline.kind.decode_items(
                as_text_rows(tensor), self.plan.inputs, self.pipeline.max_batch
            )
            return Answer(tensors=[rows[t.name] for t in self.produced])

        return [
            self.stage("preprocess", "pre-processing", lambda: decode(r), client_of(r))
            for r in requests
        ]

    # --- role: postprocess ----------------------------------------------------------------

    def postprocess(
        self, requests: list[pb_utils.InferenceRequest]
    ) -> list[pb_utils.InferenceResponse]:
        def answer(request: pb_utils.InferenceRequest) -> Answer:
            outputs = [input_array(request, n) for n in self.input_names]
            answers = self.pipeline.postprocess(outputs)
            labels = np.array([[a["label"].encode("utf-8")] for a in answers], dtype=np.object_)
            scores = np.array([[a["score"]] for a in answers], dtype=np.float32)
            return Answer(tensors=[labels, scores])

        return [self.stage("postprocess", "post-processing", lambda: answer(r)) for r in requests]

    def stage(
        self, stage: str, named: str, work: Callable[[], Answer], client: str = DIRECT
    ) -> pb_utils.InferenceResponse:
        """One request through a pre- or post-processing model, timed and counted: the ensemble's
        bytes (or text) arrive at the pre-processing model, so that is where they are counted."""
        with self.metrics.timed(stage):
            answer = isolated(named, work)
        if stage == "preprocess":
            self.metrics.request("encoded", client)
        if isinstance(answer, Failure):
            self.metrics.outcome(answer.status, answer.reason)
        return self.respond(answer)

    # --- answers --------------------------------------------------------------------------

    def respond(self, answer: Answer | Failure) -> pb_utils.InferenceResponse:
        if isinstance(answer, Failure):
            answer = Answer.failed(answer)
        if not answer.ok:
            return error_response(answer.message, answer.status)
        assert answer.tensors is not None  # a tensor request's answer holds tensors
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(name, np.asarray(o, dtype=dtype))
                for name, o, dtype in zip(self.output_names, answer.tensors, self.dtypes)
            ]
        )

    def output_dtypes(self) -> list[type[np.generic]]:
        if self.role == "model":
            return [t.numpy for t in self.plan.outputs]
        if self.role == "preprocess":
            return [t.numpy for t in self.produced]
        return [np.object_, np.float32]

    def finalize(self) -> None:
        self.core = None
        streamer: Streamer | None = getattr(self, "streamer", None)
        if streamer is not None:
            streamer.stop()
        elif getattr(self, "metrics", None) is not None:
            self.metrics.close()  # what the last second recorded
