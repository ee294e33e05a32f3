"""The gate a generation model's version passes before unversioned traffic moves to it, on the
runtime that will serve it, through the endpoints that reach exactly that version:

1. its golden prompts give its own eager `generate()` tokens, alone and all in flight, streamed
   and whole (as `make verify` checks a served generation model);
2. greedy tokens of the candidate and of the serving version on both versions' golden prompts:
   the share of equal tokens, position by position, at least `rollout.min_token_agreement`;
3. streams on each version in turn (`load_clients` clients, alternating rounds): no stream
   fails, the candidate's time to first token (p50 of its best round) is at most
   `rollout.max_ttft_factor` times the serving version's, and, where the spec gives
   `rollout.min_throughput_factor`, its tokens per second (best round) at least that many
   times the serving version's.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Callable

from scripts.measure.verify_generation import check_generation, golden_generation, mismatches
from scripts.pipeline.layout import Layout
from scripts.rollout.gate import ROUNDS, Gate, all_answered, alternating_rounds
from scripts.runtimes.calls import GenerateCall
from scripts.spec import ModelSpec

Connect = Callable[[], dict[str, GenerateCall]]  # a version's generation endpoints


def streamed(calls: dict[str, GenerateCall]) -> GenerateCall:
    return next(call for name, call in calls.items() if "stream" in name)


def golden_check(calls: dict[str, GenerateCall], spec: ModelSpec, layout: Layout, gate: Gate):
    checks = check_generation(spec, layout, calls)
    gate.figures["golden_endpoints_passed"] = sum(c["passed"] for c in checks)
    gate.problems += [
        f"version {spec.version} {c['endpoint']}: {c['detail']}" for c in checks if not c["passed"]
    ]


def token_agreement(serving: GenerateCall, candidate: GenerateCall, prompts, max_tokens) -> float:
    """Equal greedy tokens, position by position, over the longer answer of each prompt."""
    equal = total = 0
    for prompt in prompts:
        body = {"prompt": prompt, "max_tokens": max_tokens}
        old, new = serving(body).get("token_ids", []), candidate(body).get("token_ids", [])
        equal += sum(a == b for a, b in zip(old, new))
        total += max(len(old), len(new))
    return equal / total if total else 1.0


def streams_under_load(connect: Connect, body: dict, clients: int, seconds: float) -> list:
    """(seconds to the first piece, tokens) of each stream that `clients` threads send for
    `seconds` (None for a stream that failed)."""
    streams: list[tuple[float, int] | None] = []
    until = time.monotonic() + seconds

    def client() -> None:
        call = streamed(connect())
        while time.monotonic() < until:
            answer = call(body)
            ok = answer.get("status") == 200
            streams.append((answer["first_piece_s"], len(answer["token_ids"])) if ok else None)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return streams


def load_check(serving: Connect, candidate: Connect, spec: ModelSpec, body: dict, gate: Gate):
    settings = spec.rollout
    seconds = settings.load_seconds / ROUNDS
    rounds = alternating_rounds(
        serving,
        candidate,
        lambda connect: streams_under_load(connect, body, settings.load_clients, seconds),
    )
    if not all_answered(rounds, lambda s: s is None, settings, gate, "streams"):
        return
    ttft = {
        w: 1000 * min(statistics.median(s[0] for s in r) for r in runs)
        for w, runs in rounds.items()
    }
    gate.figures["ttft_p50_ms"] = ttft
    if ttft["candidate"] > settings.ttft_factor * ttft["serving"]:
        gate.problems.append(
            f"time to first token {ttft['candidate']:.1f} ms vs the serving version's "
            f"{ttft['serving']:.1f} ms (rollout.max_ttft_factor {settings.ttft_factor:g})"
        )
    # tokens, not streams: a student or an int8 variant may answer at another length
    rate = {w: max(sum(s[1] for s in r) for r in runs) / seconds for w, runs in rounds.items()}
    gate.figures["tokens_per_s"] = rate
    wanted = settings.min_throughput_factor
    if wanted is not None and rate["candidate"] < wanted * rate["serving"]:
        gate.problems.append(
            f"{rate['candidate']:.0f} tokens/s vs the serving version's {rate['serving']:.0f} "
            f"under the same load (rollout.min_throughput_factor {wanted:g})"
        )


def run_generation_gate(
    serving: Connect,
    candidate: Connect,
    spec_serving: ModelSpec,
    spec_candidate: ModelSpec,
    layout: Layout,
) -> Gate:
    """All three checks; a failed golden check stops there."""
    gate = Gate()
    golden_check(candidate(), spec_candidate, layout, gate)
    if not gate.passed:
        return gate
    goldens = [golden_generation(s, layout) for s in (spec_serving, spec_candidate)]
    prompts = list(dict.fromkeys(p for g in goldens for p in g["prompts"]))
    max_tokens = goldens[1]["max_tokens"]
    share = token_agreement(streamed(serving()), streamed(candidate()), prompts, max_tokens)
    wanted = spec_candidate.rollout.token_agreement
    gate.figures["token_agreement"] = share
    if share < wanted:
        gate.problems.append(
            f"greedy tokens agree with the serving version's on {share:.1%} of positions over "
            f"{len(prompts)} prompts (rollout.min_token_agreement {wanted:.0%})"
        )
    body = {"prompt": prompts[0], "max_tokens": max_tokens}
    load_check(serving, candidate, spec_candidate, body, gate)
    return gate


def after_switch_problems(calls: dict[str, GenerateCall], spec: ModelSpec, layout: Layout):
    """Unversioned streams must now get exactly that version's golden tokens."""
    golden = golden_generation(spec, layout)
    call = streamed(calls)
    answers = [call({"prompt": p, "max_tokens": golden["max_tokens"]}) for p in golden["prompts"]]
    return [f"unversioned requests after the switch: {m}" for m in mismatches(answers, golden)]
