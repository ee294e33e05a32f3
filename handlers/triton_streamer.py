"""A generation model on Triton's Python backend (decoupled, vLLM's tensor contract): the
decode loop of handlers/generating.py on a thread of its own, each request's pieces sent to its
response sender. handlers/triton_model.py hands requests over in execute().

A request is read and tokenized on execute()'s thread, outside the lock the loop needs, so a big
one never stalls the streams. If the loop dies, every open request gets the error and the stub
exits: Triton's model is no longer served by it, and the watchdog beside tritonserver
(scripts/runtimes/triton/watchdog.py) reloads it, instead of a model that reads READY and hangs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from handlers.batching import Failure, isolated

CANCEL_CHECK_S = 0.05  # how often the decode loop asks whether clients went away
log = logging.getLogger(__name__)


def error_response(message: str, status: int = 400):
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
        self.senders: dict[int, tuple] = {}  # key -> (request, sender, prompt, exclude input)
        self.lock, self.wake = threading.Lock(), threading.Condition()
        self.running, self.checked = True, 0.0
        self.generating, self.load_error, loaded = None, None, threading.Event()
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
            from handlers.generating import Generating
            from handlers.triton_metrics import TritonSink

            self.generating = Generating.load(folder, TritonSink())
        except BaseException as exc:  # raised again by __init__, so the load fails
            self.load_error = exc
            return
        finally:
            loaded.set()
        try:
            self.loop()
        except BaseException:
            self.die()

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
        from handlers.generating import end_process

        end_process()

    def admit(self, request) -> None:
        sender, key = request.get_response_sender(), id(request)
        admitted = isolated("reading the request", lambda: body(request))
        if isinstance(admitted, Failure):
            admitted = self.generating.refused(admitted, "generate")
        else:  # read and tokenized outside the lock: the loop keeps stepping meanwhile
            admitted = self.generating.read(admitted, "generate")
        with self.lock:
            if not isinstance(admitted, Failure):
                admitted = self.generating.enqueue(key, admitted)
            if not isinstance(admitted, Failure):
                exclude = flag(request, "exclude_input_in_output")
                self.senders[key] = (request, sender, admitted.prompt, exclude, admitted.stream)
        if isinstance(admitted, Failure):
            final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            sender.send(error_response(admitted.message, admitted.status), flags=final)
            return
        with self.wake:
            self.wake.notify()

    def loop(self) -> None:
        while self.running:
            with self.wake:
                self.wake.wait_for(lambda: self.generating.busy or not self.running)
            with self.lock:
                for key in self.cancelled_keys():
                    self.generating.cancel(key)
                    self.senders.pop(key, None)
                pieces = self.generating.step() if self.generating.busy else {}
                streams = {k: self.senders[k] for k in pieces}
                for key, piece in pieces.items():
                    if piece.final:
                        self.senders.pop(key)
            for key, piece in pieces.items():
                try:
                    self.send(piece, *streams[key])
                except Exception:  # that client's stream broke: it alone is dropped
                    log.exception("sending a piece failed; the request is cancelled")
                    with self.lock:
                        self.generating.cancel(key)
                        self.senders.pop(key, None)

    def cancelled_keys(self) -> list[int]:
        """Requests whose client went away. Asking is a round trip to the server per request,
        so it is asked every CANCEL_CHECK_S, not every step: a dropped stream decodes at most
        that much longer."""
        now = time.monotonic()
        if now - self.checked < CANCEL_CHECK_S:
            return []
        self.checked = now
        return [key for key in self.generating.keys if cancelled(self.senders[key][0])]

    def send(self, piece, request, sender, prompt: str, exclude: bool, stream: bool) -> None:
        if piece.error is not None:  # this request's own failure: its error, the others go on
            final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            sender.send(error_response(piece.error, 500), flags=final)
            return
        if not stream and not piece.final:
            return  # a request that does not stream gets one response, at the end
        text = piece.text if stream or exclude else prompt + piece.text
        outputs = [
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("token_ids", np.array(piece.token_ids, dtype=np.int64)),
            pb_utils.Tensor(
                "finish_reason", np.array([(piece.finish_reason or "").encode()], dtype=np.object_)
            ),
        ]
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if piece.final else 0
        sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=flags)

    def stop(self) -> None:
        self.running = False
        with self.wake:
            self.wake.notify()
        self.thread.join(timeout=5)
        if self.generating is not None:
            self.generating.metrics.close()


def body(request) -> dict:
    """vLLM's tensors as a completion request's fields (handlers/completions.py checks them)."""
    from handlers.completions import vllm_numbers
    from handlers.processing import RequestError

    def text(name: str) -> str | None:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        value = tensor.as_numpy().reshape(-1)[0]
        try:
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise RequestError(
                f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})", "decode"
            ) from None

    prompt, parameters = text("text_input"), text("sampling_parameters")
    try:
        sampling = json.loads(parameters) if parameters else {}
    except ValueError as exc:
        raise RequestError(f"sampling_parameters: not JSON: {exc}", "decode") from None
    if not isinstance(sampling, dict):
        raise RequestError('sampling_parameters: expected a JSON object, e.g. {"max_tokens": 16}')
    return {**vllm_numbers(sampling), "prompt": prompt, "stream": flag(request, "stream")}


def flag(request, name: str) -> bool:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return bool(tensor.as_numpy().reshape(-1)[0]) if tensor is not None else False


def cancelled(request) -> bool:
    try:
        return bool(getattr(request, "is_cancelled", lambda: False)())
    except Exception:  # a request the server no longer knows: its client is gone
        return True
