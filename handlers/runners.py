"""Load an exported model in any supported format behind one call signature.

A runner takes {input name: numpy array} and returns the outputs as a list of numpy arrays,
in the spec's output order. The build verifies exports through these same runners, so what
is verified is exactly what the servers run. Each format loads itself (handlers/formats/); an
encrypted file (handlers/encryption.py) is decrypted in memory first, for the formats that
support it: no plaintext copy of the weights is written.
"""

from __future__ import annotations

from pathlib import Path

from handlers.encryption import decrypted
from handlers.formats import format_of
from handlers.formats.base import Runner, output_list, torch_runner
from handlers.formats.torch_file import op_namespaces, register_op_libraries

# what callers use beside load_runner, wherever it is defined
__all__ = [
    "Runner",
    "load_runner",
    "op_namespaces",
    "output_list",
    "register_op_libraries",
    "torch_runner",
]


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
    format = format_of(fmt)
    plain = decrypted(Path(path), *owner) if owner is not None and format.encryptable else None
    return format.runner(path, input_names, threads, output_names, plain)
