"""TorchServe's entry point (`--handler`). TorchServe requires exactly one class here."""
from handlers.base_handler import SpecHandlerBase


class SpecHandler(SpecHandlerBase):
    """Serves any model of the spec; everything model-specific comes from its serving plan."""
