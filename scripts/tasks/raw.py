"""task: {kind: raw}: any tensors in, the model's output tensors out, compared element-wise."""

from scripts.tasks.base import OnePass


class Raw(OnePass):
    name = "raw"
