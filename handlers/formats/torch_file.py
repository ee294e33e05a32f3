"""Formats torch saves as a zip and loads back (TorchScript, ExportedProgram, AOTInductor): the
custom ops a file calls are registered before it is loaded, as a fresh server worker needs."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

from handlers.formats.base import Exportable, Format, Runner, torch_runner

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

    all_ops = torch._C._dispatch_get_all_op_names()  # pyright: ignore[reportPrivateUsage]  no public API lists them
    registered = {name.split("::")[0] for name in all_ops}
    missing: list[str] = []
    for namespace in sorted(op_namespaces(source) - registered):
        try:
            if importlib.util.find_spec(namespace) is None:
                raise ImportError(namespace)
            importlib.import_module(namespace)
        except ImportError:
            missing.append(namespace)
    return missing


def dynamic_shapes(model: Exportable) -> tuple[dict[int, Any], ...]:
    """Every -1 axis of every input is dynamic for torch.export. Dim.DYNAMIC (not named Dims)
    lets it infer what the model implies (ids and their mask share one length, a position table
    bounds it) and still fails if the model fixes an axis the spec says is dynamic."""
    import torch

    return tuple({axis: torch.export.Dim.DYNAMIC for axis in axes} for axes in model.input_axes)


class TorchFile(Format):
    engine = "torch"

    def load(self, source: str | io.BytesIO, path: Path, plain: bytes | None) -> Callable[..., Any]:
        """The callable module in the file (`source`: its path, or its decrypted bytes)."""
        raise NotImplementedError(f"{self.name} has no loader")

    def runner(
        self,
        path: str | Path,
        input_names: list[str],
        threads: int | None,
        output_names: list[str] | None,
        plain: bytes | None,
    ) -> Runner:
        import torch

        if threads:
            torch.set_num_threads(threads)
        source = str(path) if plain is None else io.BytesIO(plain)
        missing = register_op_libraries(source)
        try:
            module = self.load(source, Path(path), plain)
        except Exception as exc:
            if not missing:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeError(
                f"{Path(path).name} calls ops of {missing} that nothing here registers: install "
                f"the Python package that does (named as the namespace) where it is served "
                f"({first})"
            ) from exc
        return torch_runner(module, input_names, output_names)
