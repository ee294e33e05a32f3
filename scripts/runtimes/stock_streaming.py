"""What the stock generation setups of `make bench-generation` do with a request, as a user's
first handler does it: Hugging Face `generate()` on one prompt in a thread, each new token taken
from a streamer (transformers' BaseStreamer API) as it is made. Copied as `stock_streaming.py`
beside the stock TorchServe handler and the stock Triton model; never imported by the build."""

import queue
import threading

import torch
from transformers.generation.streamers import BaseStreamer


class TokenQueue(BaseStreamer):
    """Every new token id into a queue; None once generation ends."""

    def __init__(self):
        self.tokens, self.prompt_seen = queue.Queue(), False

    def put(self, value):
        if self.prompt_seen:  # generate() puts the prompt first
            self.tokens.put(int(value.reshape(-1)[0]))
        self.prompt_seen = True

    def end(self):
        self.tokens.put(None)


def greedy_tokens(model, prompt_ids: list[int], max_tokens: int):
    """Yields each token `generate()` makes for the prompt, greedy, as it is made (the end
    token is not one: counted as this project's setups count)."""
    streamer, ids = TokenQueue(), torch.tensor([prompt_ids])
    end = model.config.eos_token_id
    kwargs = dict(
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


def generate(model, kwargs: dict) -> None:
    with torch.inference_mode():
        model.generate(**kwargs)
