"""The int8 Linear layer of format `pretrained_int8` (imported where such a model loads: it
imports torch)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TINY = 1e-30  # an all-zero row keeps scale > 0 (its output is the bias)


def int8_linear(model: PreTrainedModel, keep_fp32: list[str] = []) -> PreTrainedModel:
    """`model` with its Linear layers int8 but those named in `keep_fp32` (in place; returned
    for chaining). ValueError naming a kept layer the model does not have."""
    module = cast(torch.nn.Module, model)
    linear_from_conv1d(module)
    linear: dict[str, torch.nn.Linear] = {}
    # transformers' classes leave their modules' names untyped
    for name, layer in module.named_modules():  # pyright: ignore[reportUnknownVariableType]
        if isinstance(layer, torch.nn.Linear):
            linear[str(name)] = layer  # pyright: ignore[reportUnknownArgumentType]
    unknown = sorted(set(keep_fp32) - set(linear))
    if unknown:
        raise ValueError(
            f"layers to keep fp32 {unknown} are not Linear layers of this model; "
            f"it has {sorted(linear)[:8]}{' ...' if len(linear) > 8 else ''}"
        )
    for name, layer in linear.items():
        if name not in keep_fp32:
            parent, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(parent), attribute, RowScaledInt8Linear(layer))
    return model


class RowScaledInt8Linear(torch.nn.Module):
    """A Linear run by torch's int8 kernels (fbgemm), each input row on a scale of its own.

    torch's dynamic int8 Linear quantises its input with one scale for the whole batch, so a
    sequence's tokens would depend on which others share its decode step (measured: 3 of 16
    golden prompts changed in company). Here every row is divided by its largest |value| and
    two columns (-1 and 1, against zero weights) are appended, so every batch spans exactly
    [-1, 1]: the batch's scale is a constant, each row's own scale is applied to its output,
    and int8 products sum exactly in int32, so a row's result is the same in any batch.
    Per-row scales also lose less than one scale per batch (1.5% vs 2.4% error, one layer)."""

    def __init__(self, layer: torch.nn.Linear):
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig

        super().__init__()
        widened = torch.nn.Linear(layer.in_features + 2, layer.out_features, bias=False)
        with torch.no_grad():
            widened.weight.zero_()
            widened.weight[:, : layer.in_features] = layer.weight
        # int8 per output channel; torch.ao reads the recipe off the module
        widened.qconfig = per_channel_dynamic_qconfig  # pyright: ignore[reportArgumentType]
        with warnings.catch_warnings():  # torch.ao's notice that torchao is its successor
            warnings.simplefilter("ignore")
            self.int8 = DynamicLinear.from_float(widened)  # pyright: ignore[reportUnknownMemberType]  untyped in torch's stub
        self.bias: torch.nn.Parameter | None = layer.bias
        self.register_buffer("ends", torch.tensor([[-1.0, 1.0]]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each step in one pass, written in place: at a decode step's sizes these small
        # element-wise passes cost as much as a third of the int8 product itself
        rows = x.reshape(-1, x.shape[-1])
        scale = rows.abs().amax(-1, keepdim=True).clamp_min_(TINY)  # (3x faster than a norm)
        widened = rows.new_empty(rows.shape[0], rows.shape[1] + 2)
        torch.div(rows, scale, out=widened[:, :-2])
        widened[:, -2:] = cast("torch.Tensor", self.ends)
        out = cast("torch.Tensor", self.int8(widened))
        out = out.mul_(scale) if self.bias is None else torch.addcmul(self.bias, out, scale)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def linear_from_conv1d(model: torch.nn.Module) -> None:
    """GPT-2's Conv1D is a Linear with its weight stored transposed: make it one, so the int8
    kernels take it (the outputs are the same)."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                inputs, outputs = child.weight.shape
                linear = torch.nn.Linear(inputs, outputs, device="meta")
                linear.weight = torch.nn.Parameter(child.weight.detach().t().contiguous())
                linear.bias = child.bias
                setattr(parent, name, linear)
