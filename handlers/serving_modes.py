"""Serving modes: how the answers to a batch of requests reach the runtime.

Both adapters call a mode the same way: `mode.serve(requests, sink)`, with a sink of their own
that turns `send(index, answer, final)` into the runtime's response:
- TorchServe (handlers/torchserve_handler.py): a final answer is handle()'s return value for
  that request; a non-final one goes out at once with
  `ts.handler_utils.utils.send_intermediate_predict_response` (HTTP chunked / gRPC stream).
- Triton (handlers/triton_model.py): a final answer is execute()'s response for that request;
  in a decoupled model (`model_transaction_policy { decoupled: true }`) each answer goes to the
  request's response sender, the last flagged TRITONSERVER_RESPONSE_COMPLETE_FINAL.

`OneAnswer` is the mode of classifiers, embedders and tensor models: exactly one final answer
per request. Generation models do not come through here: TorchServe's continuous batching calls
the handler once per decode step and Triton's decoupled model answers from its own thread, so
their mode is handlers/generating.py (`Generating`: admit / step / cancel), driven by
handlers/torchserve_generation.py and handlers/triton_streamer.py's `Streamer`. The non-final
`send` of both sinks is used by no mode today.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from handlers.serving_core import Answer, Request, ServingCore


class Sink(Protocol):
    def send(self, index: int, answer: Answer, final: bool = True) -> None:
        """Deliver one answer to request `index` of the batch being served; `final` ends that
        request's response (no answer may follow it)."""


class ServingMode(Protocol):
    def serve(self, requests: Sequence[Request], sink: Sink) -> None:
        """Answer every request through `sink`: any number of answers with final=False, then
        exactly one with final=True. One request's failure is its own final answer, never an
        exception."""


class OneAnswer:
    """One answer per request, all of a batch at once."""

    def __init__(self, core: ServingCore):
        self.core = core

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        return self.core.answer(requests)

    def serve(self, requests: Sequence[Request], sink: Sink) -> None:
        for index, answer in enumerate(self.answer(requests)):
            sink.send(index, answer, final=True)


def serving_mode(core: ServingCore) -> ServingMode:
    """The mode the model's plan calls for; every model of the spec answers once today."""
    return OneAnswer(core)
