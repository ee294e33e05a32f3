"""The setups `make bench` measures side by side: each registered runtime with a bench
capability declares its own (its stock setup, this project's deployment, and the deployment
serving int8). A runtime without one is left out of `make bench`, `bench-generation` and `tune`."""

from __future__ import annotations

from scripts.measure.bench.deployments import Setup
from scripts.runtimes.protocols import BenchSetup, Runtime
from scripts.runtimes.registry import RUNTIMES, selected
from scripts.spec import UserError


def bench_of(runtime: Runtime) -> BenchSetup:
    """A runtime's bench capability; one without it is refused by name."""
    if runtime.bench is None:
        raise UserError([f"{runtime.title} has no bench setup to measure"])
    return runtime.bench


BENCHED = [r for r in RUNTIMES.values() if r.bench is not None]


def benched(name: str = "all") -> list[Runtime]:
    """`all` (the runtimes with a bench capability) or one runtime's name (refused without one)
    -> the runtimes to measure."""
    if name == "all":
        return BENCHED
    runtimes = selected(name)
    for runtime in runtimes:
        bench_of(runtime)  # refused before anything is measured
    return runtimes


# stock and ours per runtime first, the int8 variants after: the report's order
SETUPS: list[Setup] = [
    s for int8 in (False, True) for r in BENCHED for s in bench_of(r).setups if s.int8 == int8
]
SETUP_BY_KEY = {s.key: s for s in SETUPS}
STOCK_OF = {s.runtime: s.key for s in SETUPS if s.stock}
