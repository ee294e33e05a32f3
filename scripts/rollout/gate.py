"""The gate a version passes before unversioned traffic moves to it, on the runtime that will
serve it, through the endpoints that reach exactly that version:

1. its golden samples give its eager outputs (as `make verify` checks a served model);
2. shadow comparison with the serving version on the same inputs (both versions' golden inputs
   and the example requests, decoded by the serving version's pre-processing): the share of equal
   top-1 labels and the largest output difference, and what the task kind compares itself
   (an embedding's cosine similarity), against the spec's `rollout:` thresholds;
3. a short load on each version in turn (same clients, same request, alternating rounds): the
   candidate's p99 within `max_p99_factor` of the serving version's (each taken from its best
   round, so that a burst of other traffic does not decide).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from handlers.preprocessing.pipeline import Pipeline
from handlers.preprocessing.processing import class_scores
from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.measure.verify_served import CONTENT_TYPES, Endpoints, check_golden, example_requests
from scripts.runtimes.calls import TensorCall
from scripts.spec import ModelSpec

Inputs = dict[str, np.ndarray]
Connect = Callable[[], dict[str, TensorCall]]  # a version's endpoints, on new connections
# a task kind's own shadow comparison: (spec, [(serving's outputs, candidate's) per input group],
# gate), adding its figures and problems (scripts/tasks/embedding.py: cosine similarity)
KindCompare = Callable[[ModelSpec, list[tuple[Inputs, Inputs]], "Gate"], None]


@dataclass
class Gate:
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def golden_check(
    endpoints: dict[str, TensorCall], spec: ModelSpec, layout: Layout, gate: Gate
) -> None:
    checks = check_golden(spec, layout, Endpoints(endpoints, lambda _: {}))
    gate.figures["golden_max_abs_error"] = {c.endpoint: c.max_abs_error for c in checks}
    gate.problems += [
        f"version {spec.version} golden samples via {c.endpoint}: {c.detail}"
        for c in checks
        if not c.passed
    ]


def shadow_inputs(versions: list[ModelSpec], layout: Layout) -> list[Inputs]:
    """Each version's golden inputs, then each example request as its pre-processing decodes it."""
    groups = []
    for spec in versions:
        with np.load(layout.artifact(spec).golden) as golden:
            groups.append({t.name: golden[f"input.{t.name}"] for t in spec.inputs})
    pipeline = Pipeline(serving_plan(versions[0], layout))
    requests = {p.name: p for spec in versions for p in example_requests(spec, layout)}
    groups += [
        pipeline.parse(p.read_bytes(), CONTENT_TYPES.get(p.suffix))[0] for p in requests.values()
    ]
    return groups


def top1(spec: ModelSpec, outputs: Inputs) -> np.ndarray:
    return class_scores(np.asarray(outputs[spec.outputs[0].name]), spec.task.output).argmax(-1)


def shadow_compare(
    serving: TensorCall,
    candidate: TensorCall,
    spec: ModelSpec,
    groups: list[Inputs],
    gate: Gate,
    kind_compare: KindCompare | None = None,
) -> None:
    agree = total = 0
    worst = 0.0
    pairs = []
    for inputs in groups:
        old, new = serving(spec, inputs), candidate(spec, inputs)
        pairs.append((old, new))
        worst = max(
            [
                worst,
                *(
                    float(
                        np.abs(
                            np.asarray(new[n], np.float64) - np.asarray(old[n], np.float64)
                        ).max()
                    )
                    for n in spec.output_names
                ),
            ]
        )
        if spec.task.serving.labelled:
            agree += int((top1(spec, old) == top1(spec, new)).sum())
            total += len(top1(spec, old))
    thresholds = spec.rollout
    gate.figures["shadow_samples"] = sum(len(next(iter(g.values()))) for g in groups)
    gate.figures["max_output_diff"] = worst
    if worst > thresholds.max_output_diff:
        gate.problems.append(
            f"outputs differ from the serving version by up to {worst:.4g} "
            f"(rollout.max_output_diff {thresholds.max_output_diff:g})"
        )
    if total:
        share = agree / total
        gate.figures["label_agreement"] = share
        if share < thresholds.min_label_agreement:
            gate.problems.append(
                f"top-1 labels agree with the serving version on {share:.1%} of {total} inputs "
                f"(rollout.min_label_agreement {thresholds.min_label_agreement:.0%})"
            )
    if kind_compare is not None:
        kind_compare(spec, pairs, gate)


def latencies_ms(
    connect: Connect, spec: ModelSpec, inputs: Inputs, clients: int, seconds: float
) -> list[float]:
    """Per-request latencies of `clients` threads sending `inputs` for `seconds`, each on a
    connection of its own (tritonclient's are not thread-safe) made before the clock starts (a
    gRPC client compiles its stubs first)."""
    times: list[float] = []
    window: list[float] = []
    ready = threading.Barrier(clients, action=lambda: window.append(time.monotonic() + seconds))

    def client() -> None:
        call = next(iter(connect().values()))
        ready.wait()
        while time.monotonic() < window[0]:
            start = time.perf_counter()
            try:
                call(spec, inputs)
            except Exception:  # a failed request under load: counted as infinitely slow
                times.append(float("inf"))
                continue
            times.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


ROUNDS = 3


def alternating_rounds(serving, candidate, measure: Callable) -> dict[str, list[list]]:
    """ROUNDS rounds of `measure(connect)` on each version in turn."""
    rounds: dict[str, list[list]] = {"serving": [], "candidate": []}
    for _ in range(ROUNDS):
        for which, connect in (("serving", serving), ("candidate", candidate)):
            rounds[which].append(measure(connect))
    return rounds


def all_answered(rounds: dict, failure: Callable, settings, gate: Gate, what: str) -> bool:
    """Records how many were sent and failed per version; a problem if any failed or a round
    got no answer at all."""
    failed = {w: sum(failure(t) for r in runs for t in r) for w, runs in rounds.items()}
    sent = {w: sum(len(r) for r in runs) for w, runs in rounds.items()}
    gate.figures["load"] = {
        "clients": settings.load_clients,
        "seconds_per_version": settings.load_seconds,
        what: sent,
        "failed": failed,
    }
    if any(failed.values()) or not all(all(runs) for runs in rounds.values()):
        gate.problems.append(
            f"{what} failed under load: {failed['candidate']} of {sent['candidate']} on the "
            f"candidate, {failed['serving']} of {sent['serving']} on the serving version"
        )
        return False
    return True


def p99_check(
    serving: Connect, candidate: Connect, spec: ModelSpec, row: Inputs, gate: Gate
) -> None:
    """ROUNDS alternating rounds per version; each version's p99 is its best round's, so a noisy
    moment on a shared machine (a burst of other traffic) does not decide, while a version that
    is slower every time still fails."""
    settings = spec.rollout
    rounds = alternating_rounds(
        serving,
        candidate,
        lambda connect: latencies_ms(
            connect, spec, row, settings.load_clients, settings.load_seconds / ROUNDS
        ),
    )
    if all_answered(rounds, lambda t: t == float("inf"), settings, gate, "requests"):
        compare_p99(rounds, settings.max_p99_factor, gate)


def compare_p99(rounds: dict[str, list[list[float]]], max_factor: float, gate: Gate) -> None:
    """Each version's p99 is its best round's; a problem if the candidate's is over `max_factor`
    times the serving version's."""
    p99 = {which: min(float(np.percentile(r, 99)) for r in runs) for which, runs in rounds.items()}
    gate.figures["p99_ms"] = p99
    if p99["candidate"] > max_factor * p99["serving"]:
        gate.problems.append(
            f"p99 under load {p99['candidate']:.2f} ms vs the serving version's "
            f"{p99['serving']:.2f} ms (rollout.max_p99_factor {max_factor:g})"
        )


def run_gate(
    serving: Connect,
    candidate: Connect,
    spec_serving: ModelSpec,
    spec_candidate: ModelSpec,
    layout: Layout,
    kind_compare: KindCompare | None = None,
) -> Gate:
    """All three checks; a failed golden check stops there (the rest would compare garbage).
    `kind_compare`: the task kind's own part of the shadow comparison."""
    gate = Gate()
    golden_check(candidate(), spec_candidate, layout, gate)
    if gate.passed:
        first_serving, first_candidate = (
            next(iter(serving().values())),
            next(iter(candidate().values())),
        )
        groups = shadow_inputs([spec_serving, spec_candidate], layout)
        shadow_compare(first_serving, first_candidate, spec_candidate, groups, gate, kind_compare)
        row = {name: rows[:1] for name, rows in groups[0].items()}
        p99_check(serving, candidate, spec_candidate, row, gate)
    return gate
