"""Load an exported model in any supported format behind one call signature.

A runner takes {input name: numpy array} and returns the outputs as a list of numpy arrays,
in the spec's output order. The build verifies exports through these same runners, so what
is verified is exactly what the servers run. An encrypted file (handlers/encryption.py) is
decrypted in memory: no plaintext copy of the weights is written.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from handlers.encryption import decrypted, in_memory_file

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
    owner: tuple[str, int] | None = None,
) -> Runner:
    """`owner`: the model name and version the file belongs to, which an encrypted file is
    bound to (its associated data)."""
    if fmt not in ARTIFACT_FILES or fmt == "pretrained":
        raise ValueError(f"unknown model format {fmt!r}; expected one of {sorted(ARTIFACT_FILES)}")
    plain = decrypted(Path(path), *owner) if owner is not None else None
    if fmt in ("onnx", "onnx_int8"):
        return _onnx_runner(str(path) if plain is None else plain, threads)
    import torch

    if threads:
        torch.set_num_threads(threads)
    source = str(path) if plain is None else io.BytesIO(plain)
    missing = register_op_libraries(source)
    try:
        module = _load_torch(fmt, source, path, plain)
    except Exception as exc:
        if not missing:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"{Path(path).name} calls ops of {missing} that nothing here registers: install the "
            f"Python package that does (named as the namespace) where it is served ({first})"
        ) from exc
    return torch_runner(module, input_names, output_names)


def _load_torch(fmt: str, source, path: str | Path, plain: bytes | None):
    import torch

    if fmt == "torchscript":
        return torch.jit.load(source, map_location="cpu").eval()
    if fmt == "exported_program":
        return torch.export.load(source).module()
    if plain is None:
        return torch._inductor.aoti_load_package(str(path))
    with in_memory_file(plain, Path(path).name) as memory_path:
        return torch._inductor.aoti_load_package(memory_path)


# Op namespaces a saved graph may call that torch registers itself; any other (torchvision::nms)
# is registered by its Python package, which a fresh process has not imported: the loader would
# refuse the file with "Unknown builtin op".
TORCH_OPS = {"aten", "prim", "prims", "quantized", "_quantized", "profiler", "inductor", "c10d"}
OP_CALLS = {  # TorchScript code: ops.torchvision.nms(; a .pt2's graph: torch.ops.torchvision.nms
    ".py": re.compile(rb"(?<![\w.])ops\.([A-Za-z_]\w*)\.\w+\("),
    ".json": re.compile(rb"\btorch\.ops\.([A-Za-z_]\w*)\.\w|\b([A-Za-z_]\w*)::\w"),
}


def op_namespaces(source: str | io.BytesIO) -> set[str]:
    """The op namespaces beyond torch's own that a saved TorchScript / .pt2 file calls, read
    from its code and graph entries (not its weights)."""
    found: set[str] = set()
    try:
        with zipfile.ZipFile(source) as archive:
            for entry in archive.infolist():
                calls = OP_CALLS.get(Path(entry.filename).suffix)
                if calls is not None and entry.file_size < 1 << 24:
                    for match in calls.finditer(archive.read(entry)):
                        found.add(next(g for g in match.groups() if g).decode())
    except (OSError, zipfile.BadZipFile):
        return set()  # not a zip: the loader says what is wrong with it
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    return found - TORCH_OPS


def register_op_libraries(source: str | io.BytesIO) -> list[str]:
    """Import the package of each namespace the file calls (torchvision for torchvision::nms)
    unless its ops are registered already; returns the namespaces nothing could register."""
    import importlib
    import importlib.util

    import torch

    registered = {name.split("::")[0] for name in torch._C._dispatch_get_all_op_names()}
    missing = []
    for namespace in sorted(op_namespaces(source) - registered):
        try:
            if importlib.util.find_spec(namespace) is None:
                raise ImportError(namespace)
            importlib.import_module(namespace)
        except ImportError:
            missing.append(namespace)
    return missing


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


def _onnx_runner(path: str | bytes, threads: int | None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, {n: np.ascontiguousarray(inputs[n]) for n in names})

    return run
