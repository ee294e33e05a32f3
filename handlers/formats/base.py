"""What every export format is: a class with its name, its file, how it is exported from a
module and how it is loaded back as a runner (handlers/formats/__init__.py lists them).

A runner takes {input name: numpy array} and returns the outputs as a list of numpy arrays, in
the spec's output order. torch, onnx and onnxruntime are imported where a model is exported or
loaded, not here: the spec and the servers' pre/post-processing models import the registry
without ever loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence, cast

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

Runner = Callable[[dict[str, NDArray[Any]]], list[NDArray[Any]]]


@dataclass(frozen=True)
class Exportable:
    """A model as an exporter takes it: plain values the build reads off the spec."""

    module: Any  # the eager nn.Module, or a TorchScript module when the source is one
    args: tuple[torch.Tensor, ...]  # example inputs, one tensor per input
    input_names: list[str]
    output_names: list[str]
    input_axes: list[list[int]]  # each input's dynamic (-1) axes
    output_axes: list[list[int]]  # each output's
    scripted: bool = False  # the module is TorchScript already (a .pt source)


class Format:
    """One export format. Subclasses set the class attributes and implement what applies."""

    name: ClassVar[str]
    title: ClassVar[str]  # as messages name it ("the ONNX export")
    file: ClassVar[str]  # inside artifacts/<model>/<version>/
    engine: ClassVar[str]  # what runs it: torch, onnxruntime, transformers
    auto: ClassVar[bool] = False  # exported by `formats: auto`
    encryptable: ClassVar[bool] = True  # encrypted at rest, decrypted in memory at load
    quantized_from: ClassVar[str | None] = None  # made from that format's verified export
    from_torchscript: ClassVar[bool] = False  # can be made from a TorchScript source
    measured: ClassVar[bool] = True  # timed by the bench and swept by the tuner
    generation: ClassVar[bool] = False  # a language model's folder, not a tensor runner
    # Triton's backend for it: NVIDIA's native one (pytorch, onnxruntime), else our Python one
    triton_backend: ClassVar[str] = "python"

    def export(self, model: Exportable, path: Path) -> None:
        raise NotImplementedError(f"{self.name} is not exported from a module")

    def runner(
        self,
        path: str | Path,
        input_names: list[str],
        threads: int | None,
        output_names: list[str] | None,
        plain: bytes | None,
    ) -> Runner:
        """The file (or its decrypted bytes, `plain`) as a Runner."""
        raise NotImplementedError(f"{self.name} has no runner")

    def __repr__(self) -> str:
        return f"<format {self.name}>"


def output_list(outputs: Any, names: list[str] | None = None) -> list[Any]:
    """What forward() returned (a tensor, a tuple or list, or a dict keyed by the spec's output
    names) as a list in the spec's order."""
    if isinstance(outputs, dict):
        named = cast("dict[str, Any]", outputs)
        return [named[n] for n in names] if names else list(named.values())
    return list(cast("Sequence[Any]", outputs)) if isinstance(outputs, (list, tuple)) else [outputs]


def torch_runner(
    module: Callable[..., Any], input_names: list[str], output_names: list[str] | None = None
) -> Runner:
    """Wrap any callable torch module (eager, scripted, exported, AOTI) as a Runner."""
    import torch

    def run(inputs: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]  # pyright: ignore[reportUnknownMemberType]  its parameter is untyped in torch's stub
            outputs = module(*tensors)
        return [o.detach().cpu().numpy() for o in output_list(outputs, output_names)]

    return run
