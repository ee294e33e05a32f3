"""The runtimes, by name. A third runtime is one more folder and one more line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scripts.runtimes.names import RUNTIME_NAMES
from scripts.runtimes.protocols import Live, Runtime, Server
from scripts.runtimes.torchserve.runtime import TORCHSERVE
from scripts.runtimes.triton.runtime import TRITON
from scripts.spec import BuildError

# Each runtime has its own server type, checked where its capabilities are gathered
# (<runtime>/runtime.py); here they share a list, so the server type is left open (Any).
RUNTIMES: dict[str, Runtime[Any]] = {runtime.name: runtime for runtime in (TORCHSERVE, TRITON)}
assert tuple(RUNTIMES) == RUNTIME_NAMES, "scripts/runtimes/names.py lists the registered runtimes"


def selected(name: str = "all") -> list[Runtime[Any]]:
    """`all` or one runtime's name -> the runtimes, in a fixed order."""
    if name == "all":
        return list(RUNTIMES.values())
    if name not in RUNTIMES:
        raise BuildError(f"unknown runtime {name!r}; use one of {['all', *RUNTIMES]}")
    return [RUNTIMES[name]]


def attached(servers: Mapping[str, Server]) -> list[Live[Any]]:
    """{runtime name: its running server} (scripts.runtimes.serving.serving()) -> each runtime
    bound to its server."""
    return [RUNTIMES[name].attach(server) for name, server in servers.items()]
