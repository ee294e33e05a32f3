"""A generation model on Triton's Python backend (decoupled, vLLM's tensor contract): the
decode loop of handlers/engines/generating.py on a thread of its own, each request's pieces sent to
its
response sender. handlers/adapters/triton_model.py hands requests over in execute().

A request is read and tokenized on execute()'s thread, outside the lock the loop needs, so a big
one never stalls the streams. If the loop dies, every open request gets the error and the stub
exits: Triton's model is no longer served by it, and the watchdog beside tritonserver
(scripts/runtimes/triton/watchdog.py) reloads it, instead of a model that reads READY and hangs.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import triton_python_backend_utils as pb_utils  # pyright: ignore[reportMissingModuleSource]  only in Triton: typings/

from handlers.adapters.triton_metrics import TritonSink, client_of
from handlers.engines.batching import Failure, isolated
from handlers.protocols import GENERATION_PROTOCOLS, ModelFacts, Writer
from handlers.protocols.vllm_tensors import INPUTS

if TYPE_CHECKING:
    import numpy.typing as npt

    from handlers.engines.completions import Piece
    from handlers.engines.generating import Generating

    # an open request's stream: the request, its response sender and its protocol's writer
    Stream = tuple[pb_utils.InferenceRequest, pb_utils.ResponseSender, Writer]

CANCEL_CHECK_S = 0.05  # how often the decode loop asks whether clients went away
log = logging.getLogger(__name__)


def error_response(message: str, status: int = 400) -> pb_utils.InferenceResponse:
    """Our HTTP-style status in Triton's terms: overload UNAVAILABLE (its own queue-full
    answer), our failure INTERNAL, the client's mistake INVALID_ARG."""
    if status in (429, 503):
        code = pb_utils.TritonError.UNAVAILABLE
    else:
        code = pb_utils.TritonError.INTERNAL if status >= 500 else pb_utils.TritonError.INVALID_ARG
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class Streamer:
    """A generation model as a decoupled Triton model (vLLM's tensor contract): execute()
    admits requests and returns; this thread runs the decode loop while anything is running
    (requests join between steps) and sends each request's pieces to its response sender, the
    last flagged final. A cancelled request (client gone) leaves at the next step."""

    def __init__(self, folder: Path):
        self.senders: dict[int, Stream] = {}  # key -> (request, sender, writer)
        self.lock, self.wake = threading.Lock(), threading.Condition()
        self.running, self.checked = True, 0.0
        self.generating: Generating[int] | None = None
        self.load_error: BaseException | None = None
        loaded = threading.Event()
        self.thread = threading.Thread(
            target=self.run, args=(folder, loaded), name="decode-loop", daemon=True
        )
        self.thread.start()
        loaded.wait()
        if self.load_error is not None:
            raise self.load_error

    def run(self, folder: Path, loaded: threading.Event) -> None:
        """Load the model and run the loop on this one thread. Torch's OpenMP pool belongs to
        the thread that calls it: had the load run on the stub's main thread, the loop's ops
        would run in a second pool beside the first, and on 2 cores each was 2-10x slower (a
        token 49 ms instead of 29)."""
        try:
            from handlers.engines.generating import Generating

            self.generating = Generating.load(folder, TritonSink())
            # vLLM's contract has no chat messages: no template to render them with
            self.facts = ModelFacts(None, self.generating.language.max_prompt_bytes)
        except BaseException as exc:  # raised again by __init__, so the load fails
            self.load_error = exc
            return
        finally:
            loaded.set()
        try:
            self.loop()
        except BaseException:
            self.die()

    @property
    def engine(self) -> Generating[int]:
        """The loaded model's loop: set before __init__ returns (a failed load raises there)."""
        assert self.generating is not None
        return self.generating

    def die(self) -> None:
        """The loop died: every open request gets the error, then the stub exits."""
        log.exception("the decode loop died; the stub exits for the watchdog to reload it")
        message = "the model's decode loop died; it is being reloaded, retry"
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        for _, sender, *_ in list(self.senders.values()):
            try:
                sender.send(error_response(message, 503), flags=final)
            except Exception:  # the client may be gone already
                pass
        from handlers.engines.generating import end_process

        end_process()

    def admit(self, request: pb_utils.InferenceRequest) -> None:
        sender, key = request.get_response_sender(), id(request)
        protocol = GENERATION_PROTOCOLS["generate"]
        read = isolated("reading the request", lambda: protocol.read(tensors(request), self.facts))
        client = client_of(request)
        if isinstance(read, Failure):
            admitted, writer = self.engine.refused(read, protocol.name, client), None
        else:  # read and tokenized outside the lock: the loop keeps stepping meanwhile
            fields, writer = read
            admitted = self.engine.read(fields, protocol.name, client)
        with self.lock:
            if not isinstance(admitted, Failure):
                admitted = self.engine.enqueue(key, admitted)
            if writer is not None and not isinstance(admitted, Failure):
                writer.admitted(admitted)
                self.senders[key] = (request, sender, writer)
        if isinstance(admitted, Failure):
            final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            sender.send(error_response(admitted.message, admitted.status), flags=final)
            return
        with self.wake:
            self.wake.notify()

    def loop(self) -> None:
        while self.running:
            with self.wake:
                self.wake.wait_for(lambda: self.engine.busy or not self.running)
            with self.lock:
                for key in self.cancelled_keys():
                    self.engine.cancel(key)
                    self.senders.pop(key, None)
                pieces = self.engine.step() if self.engine.busy else {}
                streams = {k: self.senders[k] for k in pieces}
                ended = {k for k in pieces if k not in self.engine.requests}
                for key in ended:
                    self.senders.pop(key)
            for key, made in pieces.items():
                try:
                    for i, piece in enumerate(made):
                        self.send(piece, key in ended and i == len(made) - 1, *streams[key])
                except Exception:  # that client's stream broke: it alone is dropped
                    log.exception("sending a piece failed; the request is cancelled")
                    with self.lock:
                        self.engine.cancel(key)
                        self.senders.pop(key, None)

    def cancelled_keys(self) -> list[int]:
        """Requests whose client went away. Asking is a round trip to the server per request,
        so it is asked every CANCEL_CHECK_S, not every step: a dropped stream decodes at most
        that much longer."""
        now = time.monotonic()
        if now - self.checked < CANCEL_CHECK_S:
            return []
        self.checked = now
        return [key for key in self.engine.keys if cancelled(self.senders[key][0])]

    def send(
        self,
        piece: Piece,
        last: bool,
        request: pb_utils.InferenceRequest,
        sender: pb_utils.ResponseSender,
        writer: Writer,
    ) -> None:
        if piece.error is not None:  # this request's own failure: its error, the others go on
            final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            sender.send(error_response(piece.error, 500), flags=final)
            return
        outputs: dict[str, npt.NDArray[Any]] | None = writer.piece(piece)  # vLLM's tensors
        if outputs is None:
            return
        tensors = [pb_utils.Tensor(name, array) for name, array in outputs.items()]
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if last else 0
        sender.send(pb_utils.InferenceResponse(output_tensors=tensors), flags=flags)

    def stop(self) -> None:
        self.running = False
        with self.wake:
            self.wake.notify()
        self.thread.join(timeout=5)
        if self.generating is not None:
            self.generating.metrics.close()


def tensors(request: pb_utils.InferenceRequest) -> dict[str, npt.NDArray[Any] | None]:
    """The request's inputs of vLLM's contract as numpy arrays (None: not sent)."""
    found = {name: pb_utils.get_input_tensor_by_name(request, name) for name in INPUTS}
    return {name: t.as_numpy() if t is not None else None for name, t in found.items()}


def cancelled(request: pb_utils.InferenceRequest) -> bool:
    try:
        return bool(getattr(request, "is_cancelled", lambda: False)())
    except Exception:  # a request the server no longer knows: its client is gone
        return True
