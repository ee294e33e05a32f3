"""Steady client traffic against running servers while something changes under it (a rollout,
a rollback, a killed process), with every answer checked: which version's eager output it
equals, or why it failed. Used by `make drill` and by the rollout and fault tests.

Each client is one thread with its own connection (tritonclient's are not thread-safe) that
sends one golden row at a time, unversioned or naming a version, as fast as it is answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from scripts.measure.verify_generation import golden_generation
from scripts.pipeline.export_generation import eager_tokens, served_language
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import golden_examples
from scripts.pipeline.verify import compare
from scripts.measure.verify_served import reference_runner
from scripts.runtimes.calls import TensorCall
from scripts.runtimes.protocols import Live, Server
from scripts.runtimes.registry import attached
from scripts.spec import ModelSpec

ROWS = 8


@dataclass(frozen=True)
class Client:
    name: str  # e.g. "triton-grpc unversioned"
    runtime: str
    version: int | None  # the version it names, None for unversioned
    connect: Callable[[], TensorCall]  # a fresh connection to one endpoint


@dataclass(frozen=True)
class Answer:
    client: str
    runtime: str
    asked: int | None
    started: float  # time.monotonic()
    latency_ms: float
    version: int | None  # whose outputs it equals; None: neither, or failed
    error: str = ""
    client_id: int = 0  # which client (thread) sent it
    decisive: bool = False  # the versions' expected answers to its row differ: it shows which


@dataclass
class Traffic:
    """Start with `with Traffic(...) as traffic:`; answers collect in `traffic.answers`."""

    spec: ModelSpec
    clients: list[Client]
    expected: dict[int, list[dict[str, np.ndarray]]]  # version -> per-row outputs
    inputs: list[dict[str, np.ndarray]]  # per row
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _answered: set[int] = field(default_factory=set)  # clients with a first answer (warm)

    def __enter__(self) -> Traffic:
        self._threads = [
            threading.Thread(target=self._run, args=(i, c), daemon=True)
            for i, c in enumerate(self.clients)
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def warm(self, timeout_s: float = 60) -> None:
        """Wait until every client has had an answer (connections made, stubs compiled)."""
        deadline = time.monotonic() + timeout_s
        while len(self._answered) < len(self.clients) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, index: int, client: Client) -> None:
        call, row = client.connect(), 0
        decisive = [self.decisive(r) for r in range(len(self.inputs))]
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                outputs, error = call(self.spec, self.inputs[row]), ""
            except Exception as exc:  # a failed request is what this counts
                outputs, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
            latency = (time.monotonic() - started) * 1000
            answered = self.whose(outputs, row, client.version) if outputs is not None else None
            if outputs is not None and answered is None:
                error = "answer equals no version's outputs"
            self.answers.append(
                Answer(
                    client.name,
                    client.runtime,
                    client.version,
                    started,
                    latency,
                    answered,
                    error,
                    index,
                    decisive[row],
                )
            )
            self._answered.add(index)
            row = (row + 1) % len(self.inputs)

    def candidates(self, asked: int | None) -> list[int]:
        """Versions to match an answer against: the one asked for first, since two versions
        may give the same answer to a row (crediting the other would report a stray)."""
        return sorted(self.expected, key=lambda version: version != asked)

    def decisive(self, row: int) -> bool:
        """Whether the versions' expected answers to `row` differ: only then does an answer
        show which version gave it."""
        first, *others = (rows[row] for rows in self.expected.values())
        return any(not self.same(first, other) for other in others)

    def same(self, want: dict, got: dict) -> bool:
        return all(
            compare(np.asarray(got[n], dtype=w.dtype), w, self.spec.tolerance).passed
            for n, w in want.items()
        )

    def whose(self, outputs: dict, row: int, asked: int | None = None) -> int | None:
        """The version whose expected answer `outputs` is (the asked one when it fits)."""
        got = self.as_expected(outputs)
        return next(
            (v for v in self.candidates(asked) if self.same(self.expected[v][row], got)), None
        )

    def as_expected(self, outputs: dict):
        return outputs


class GenerationTraffic(Traffic):
    """Streams instead of tensors: each row is a completion request, each version's expected
    answer its greedy tokens."""

    def same(self, want: list, got: list) -> bool:
        return want == got

    def as_expected(self, outputs: dict):
        return outputs.get("token_ids")


def stream_call(call) -> TensorCall:
    """A generation endpoint as Traffic calls one: (spec, body) -> the answer; a failed stream
    raises, naming its status and error."""

    def send(spec: ModelSpec, body: dict) -> dict:
        answer = call(body)
        if answer.get("status") != 200 or not answer.get("finish_reason"):
            raise RuntimeError(f"status {answer.get('status')}: {answer.get('error', answer)}")
        return answer

    return send


def tensor_endpoint_sets(live: Live, spec: ModelSpec) -> Callable:
    """(version) -> {endpoint: (spec, request) -> answer}: a one-pass model's tensor endpoints."""
    return lambda version: (
        live.version_endpoints(spec, version) if version is not None else live.tensor_endpoints()
    )


def stream_endpoint_sets(live: Live, spec: ModelSpec) -> Callable:
    """(version) -> a generation model's streamed endpoints."""

    def streams(version):
        calls = live.generation_endpoints(spec, version)
        return {name: stream_call(call) for name, call in calls.items() if "stream" in name}

    return streams


def clients_for(
    servers: Mapping[str, Server],
    spec: ModelSpec,
    per_endpoint: int,
    named: int | None,
    endpoint_sets: Callable,
    through_gateway: Callable[[Live], dict[str, Any]] | None = None,
) -> list[Client]:
    """Per runtime ({name: running server}) and endpoint (REST/HTTP, gRPC; a generation
    model's streams): `per_endpoint` unversioned clients, and half as many naming version
    `named` when given; with `through_gateway` (a runtime's endpoints through the gateway),
    `per_endpoint` unversioned clients on each of those too."""
    clients = []
    for live in attached(servers):
        name = live.name
        gateway_sets: Callable[[Live], dict[str, Any]] = through_gateway or (lambda live: {})
        for endpoint in gateway_sets(live):
            # resolved per request, like the direct ones: a client object is not shared
            # between threads (tritonclient's HTTP client is not thread-safe)
            def gated(endpoint=endpoint, live=live):
                return gateway_sets(live)[endpoint]

            clients += [
                Client(f"{endpoint} unversioned", name, None, gated) for _ in range(per_endpoint)
            ]
        endpoints = endpoint_sets(live, spec)
        for endpoint in endpoints(None):

            def unversioned(endpoint=endpoint, endpoints=endpoints):
                return endpoints(None)[endpoint]

            def versioned(endpoint=endpoint, endpoints=endpoints):
                return endpoints(named)[endpoint]

            clients += [
                Client(f"{endpoint} unversioned", name, None, unversioned)
                for _ in range(per_endpoint)
            ]
            if named is not None:
                clients += [
                    Client(f"{endpoint} version {named}", name, named, versioned)
                    for _ in range(max(1, per_endpoint // 2))
                ]
    return clients


def expected_rows(
    spec: ModelSpec, versions: list[int], layout: Layout
) -> tuple[list[dict], dict[int, list[dict]]]:
    """The first golden rows of the first version, and what each version's eager model answers
    for each of them."""
    inputs = golden_examples(spec, layout, ROWS)
    expected = {}
    for version in versions:
        model = reference_runner(spec.at_version(version), layout)
        expected[version] = [dict(zip(spec.output_names, model(row))) for row in inputs]
    return inputs, expected


def summary(
    answers: list[Answer], since: float = float("-inf"), until: float = float("inf")
) -> dict:
    """Counts, failures and latency percentiles of the answers to requests started in
    [since, until)."""
    window = [a for a in answers if since <= a.started < until]
    latencies = [a.latency_ms for a in window if not a.error]
    return {
        "requests": len(window),
        "failed": sum(1 for a in window if a.error),
        "by_version": {
            str(v): sum(1 for a in window if a.version == v and not a.error)
            for v in sorted({a.version for a in window if a.version is not None})
        },
        # requests that named a version and got another's answer: never expected
        "wrong_version": sum(
            1 for a in window if a.asked is not None and a.version not in (None, a.asked)
        ),
        "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
        "errors": sorted({a.error for a in window if a.error})[:5],
    }


def expected_tokens(spec: ModelSpec, versions: list[int], layout: Layout) -> tuple[list, dict]:
    golden = golden_generation(spec.at_version(versions[0]), layout)
    bodies = [{"prompt": p, "max_tokens": golden["max_tokens"]} for p in golden["prompts"][:ROWS]]
    expected = {}
    for version in versions:
        language = served_language(spec.at_version(version), layout)
        made = eager_tokens(language, [b["prompt"] for b in bodies], golden["max_tokens"])
        expected[version] = made["token_ids"]
    return bodies, expected
