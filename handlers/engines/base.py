"""The engine interface both serving cores share: requests `admit`ted by key, `step()` giving
some of them their next output, `cancel` for a request whose client went away. A runtime's
adapter (handlers/adapters/) only moves bytes between its runtime and an engine:

- handlers/engines/forward.py, a one-pass model: every admitted request is answered in the
  next step, in one batch, each output final;
- handlers/engines/generating.py, a language model: each step decodes one token for every
  running request (in-flight batching); an output is final when its sequence ended.

Which engine serves a model is its task kind's (handlers/tasks.py, `engine`).
"""

from __future__ import annotations

from typing import Any, Hashable, Protocol


class Output(Protocol):
    @property
    def final(self) -> bool:
        """No output follows this one for its request."""
        ...


class Engine(Protocol):
    def admit(self, key: Hashable, request: Any) -> Any:
        """Take a request; a Failure (handlers/engines/batching.py) is its whole answer."""
        ...

    def step(self) -> dict[Hashable, Any]:
        """The next Output of each request that has one now."""
        ...

    def cancel(self, key: Hashable) -> None:
        """The request leaves; nothing more is made for it."""
        ...

    @property
    def busy(self) -> bool:
        """Some admitted request is not finished."""
        ...
