"""The streamer the stock generation setups hand to `generate()` (transformers' BaseStreamer
API): every new token id into a queue, None once generation ends. Copied as `token_queue.py`
beside the stock TorchServe handler and the stock Triton model; never imported by the build."""

import queue

from transformers.generation.streamers import BaseStreamer


class TokenQueue(BaseStreamer):
    def __init__(self):
        self.tokens, self.prompt_seen = queue.Queue(), False

    def put(self, value):
        if self.prompt_seen:  # generate() puts the prompt first
            self.tokens.put(int(value.reshape(-1)[0]))
        self.prompt_seen = True

    def end(self):
        self.tokens.put(None)
