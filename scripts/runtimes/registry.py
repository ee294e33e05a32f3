"""The runtime plugins, by name. A third runtime is one more folder and one more line here."""
from __future__ import annotations

from scripts.runtimes.base import Runtime
from scripts.runtimes.torchserve.plugin import TorchServe
from scripts.runtimes.triton.plugin import Triton
from scripts.spec import BuildError

RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (TorchServe(), Triton())}


def selected(name: str = "all") -> list[Runtime]:
    """`all` or one runtime's name -> the plugins, in a fixed order."""
    if name == "all":
        return list(RUNTIMES.values())
    if name not in RUNTIMES:
        raise BuildError(f"unknown runtime {name!r}; use one of {['all', *RUNTIMES]}")
    return [RUNTIMES[name]]
