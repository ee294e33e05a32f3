"""Build-time loading of a spec's model: the eager reference every export is checked against."""

from __future__ import annotations

import importlib

import torch

from handlers.runners import register_op_libraries
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, ModelSpec


def import_target(target: str):
    """'package.module:Name' -> the object."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build_module(spec: ModelSpec) -> torch.nn.Module:
    """A fresh, untrained instance of the spec's nn.Module class."""
    if spec.source.module is None:
        raise BuildError(f"{spec.name}: source.module is needed to build the model")
    return import_target(spec.source.module)(**spec.source.kwargs)


def load_reference(spec: ModelSpec, layout: Layout) -> torch.nn.Module:
    """The trained model in eval mode: state_dict loaded with weights_only=True, or the
    exported file the spec names."""
    source = spec.source
    if source.exported is not None:
        path = layout.source(source.exported)
        register_op_libraries(str(path))  # a detector's file calls torchvision::nms
        if source.is_torchscript:
            return torch.jit.load(str(path), map_location="cpu").eval()
        return torch.export.load(str(path)).module()
    module = build_module(spec)
    if source.checkpoint is None:
        raise BuildError(f"{spec.name}: neither source.exported nor source.checkpoint to load")
    state = torch.load(layout.source(source.checkpoint), map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # names every key and shape: the first two lines say enough
        found = " ".join(line.strip() for line in str(exc).splitlines()[1:2])
        raise BuildError(
            f"{spec.name}: source.checkpoint {source.checkpoint} does not fit "
            f"{source.module}({source.kwargs}): {found}; fix source.kwargs or the checkpoint"
        ) from None
    return module.eval()
