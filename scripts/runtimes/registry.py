"""The runtimes, by name. A third runtime is one more folder and one more line here."""

from __future__ import annotations

from scripts.runtimes.names import RUNTIME_NAMES
from scripts.runtimes.protocols import Runtime
from scripts.runtimes.torchserve.runtime import TORCHSERVE
from scripts.runtimes.triton.runtime import TRITON
from scripts.spec import BuildError

RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (TORCHSERVE, TRITON)}
assert tuple(RUNTIMES) == RUNTIME_NAMES, "scripts/runtimes/names.py lists the registered runtimes"


def selected(name: str = "all") -> list[Runtime]:
    """`all` or one runtime's name -> the runtimes, in a fixed order."""
    if name == "all":
        return list(RUNTIMES.values())
    if name not in RUNTIMES:
        raise BuildError(f"unknown runtime {name!r}; use one of {['all', *RUNTIMES]}")
    return [RUNTIMES[name]]
