"""What the stock generation setups of `make bench-generation` do with a request, as a user's
first handler does it: Hugging Face `generate()` on one prompt in a thread, each new token taken
from a streamer (transformers' BaseStreamer API) as it is made. Copied as `stock_streaming.py`
beside the stock TorchServe handler and the stock Triton model; never imported by the build."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class CausalLM(Protocol):
    """What is used of the handler's model (AutoModelForCausalLM's): its config and generate()."""

    @property
    def config(self) -> PretrainedConfig: ...

    def generate(self, **kwargs: Any) -> Any: ...


class TokenQueue(BaseStreamer):
    """Every new token id into a queue; None once generation ends."""

    def __init__(self) -> None:
        self.tokens: queue.Queue[int | None] = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:  # generate() puts the prompt first
            self.tokens.put(int(value.reshape(-1)[0]))
        self.prompt_seen = True

    def end(self) -> None:
        self.tokens.put(None)


def greedy_tokens(model: CausalLM, prompt_ids: list[int], max_tokens: int) -> Iterator[int]:
    """Yields each token `generate()` makes for the prompt, greedy, as it is made (the end
    token is not one: counted as this project's setups count)."""
    streamer, ids = TokenQueue(), torch.tensor([prompt_ids])
    end = model.config.eos_token_id
    kwargs: dict[str, Any] = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_tokens,
        do_sample=False,
        streamer=streamer,
        pad_token_id=end,
    )
    worker = threading.Thread(target=generate, args=(model, kwargs))
    worker.start()
    while (token := streamer.tokens.get()) is not None:
        if token != end:
            yield token
    worker.join()


def generate(model: CausalLM, kwargs: dict[str, Any]) -> None:
    with torch.inference_mode():
        model.generate(**kwargs)
