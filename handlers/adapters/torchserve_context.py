"""What the TorchServe adapters use of the worker's context (`ts.context.Context`), as protocols:
the worker passes its own Context, the build's load check (scripts/runtimes/torchserve/
archive.py) and the tests objects of the same shape. Only for typing: nothing here runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ts.metrics.metric_cache_abstract import MetricCacheAbstract


class TorchServeContext(Protocol):
    """What every handler reads and writes of the context."""

    @property
    def system_properties(self) -> Mapping[str, Any]: ...

    @property
    def request_ids(self) -> Mapping[int, str]: ...  # a batch's request ids, by index

    def get_request_header(self, idx: int, key: str) -> str | None: ...

    # header name -> value; for a form upload, a field's name -> that field's own headers
    def get_all_request_header(self, idx: int) -> Mapping[str, Any]: ...

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None: ...

    def set_response_content_type(self, idx: int, value: str) -> None: ...


class DecodingContext(TorchServeContext, Protocol):
    """A continuous-batching handler's context: after each handle() the frontend calls each
    request's stopping criterion (with that request's answer) to learn whether it is done."""

    stopping_criteria: list[Callable[[Any], bool | None]] | None


class MetricsContext(Protocol):
    """A worker's context with its metrics cache (the build's load check has none)."""

    @property
    def metrics(self) -> MetricCacheAbstract: ...
