"""Load an exported model in any supported format behind one call signature.

A runner takes {input name: numpy array} and returns the outputs as a list of numpy arrays,
in the spec's output order. The build verifies exports through these same runners, so what
is verified is exactly what the servers run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]

# Exported file name per format, inside artifacts/<model>/<version>/.
ARTIFACT_FILES = {
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "aoti": "model.aoti.pt2",
    "exported_program": "model.exported.pt2",
    "onnx_int8": "model.int8.onnx",  # the ONNX export quantised (scripts/pipeline/quantize.py)
    "pretrained": "pretrained",  # a generation model: Hugging Face folder (config, safetensors)
}


def load_runner(
    fmt: str,
    path: str | Path,
    input_names: list[str],
    threads: int | None = None,
    output_names: list[str] | None = None,
) -> Runner:
    if fmt in ("onnx", "onnx_int8"):
        return _onnx_runner(str(path), threads)
    import torch

    if threads:
        torch.set_num_threads(threads)
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()
    elif fmt == "aoti":
        module = torch._inductor.aoti_load_package(str(path))
    elif fmt == "exported_program":
        module = torch.export.load(str(path)).module()
    else:
        raise ValueError(f"unknown model format {fmt!r}; expected one of {sorted(ARTIFACT_FILES)}")
    return torch_runner(module, input_names, output_names)


def output_list(outputs, names: list[str] | None = None) -> list:
    """What forward() returned (a tensor, a tuple or list, or a dict keyed by the spec's output
    names) as a list in the spec's order."""
    if isinstance(outputs, dict):
        return [outputs[n] for n in names] if names else list(outputs.values())
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def torch_runner(module, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    """Wrap any callable torch module (eager, scripted, exported, AOTI) as a Runner."""
    import torch

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = module(
                *[torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]
            )
        return [o.detach().cpu().numpy() for o in output_list(outputs, output_names)]

    return run


def _onnx_runner(path: str, threads: int | None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, {n: np.ascontiguousarray(inputs[n]) for n in names})

    return run
