"""The engine of a one-pass model (handlers/engines/base.py): every admitted request is answered
at the next step, all of them in one batch through the serving core, each answer final."""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

from handlers.engines.serving_core import Answer, Request, ServingCore


K = TypeVar("K", bound=Hashable)  # how an adapter names its requests


class Forward(Generic[K]):
    def __init__(self, core: ServingCore):
        self.core = core
        self.admitted: dict[K, Request] = {}

    def admit(self, key: K, request: Request) -> None:
        self.admitted[key] = request  # read and checked in the step, with its batch

    def step(self) -> dict[K, Answer]:
        keys, requests = list(self.admitted), list(self.admitted.values())
        self.admitted.clear()
        return dict(zip(keys, self.core.answer(requests)))

    def cancel(self, key: K) -> None:
        self.admitted.pop(key, None)

    @property
    def busy(self) -> bool:
        return bool(self.admitted)
