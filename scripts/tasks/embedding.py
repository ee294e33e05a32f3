"""task: {kind: embedding}: vectors out (one per example), answered and compared as tensors."""

from scripts.tasks.base import OnePass


class Embedding(OnePass):
    name = "embedding"
