"""The setups `make bench` measures side by side: each registered runtime declares its own
(its stock setup, this project's deployment, and the deployment serving int8)."""

from __future__ import annotations

from scripts.runtimes.protocols import Setup
from scripts.runtimes.registry import RUNTIMES

# stock and ours per runtime first, the int8 variants after: the report's order
SETUPS: list[Setup] = [
    s for int8 in (False, True) for r in RUNTIMES.values() for s in r.bench.setups if s.int8 == int8
]
SETUP_BY_KEY = {s.key: s for s in SETUPS}
STOCK_OF = {s.runtime: s.key for s in SETUPS if s.stock}
