"""What a long prompt joining does to the streams already decoding, and what a shared prefix
saves, in process (no server):
8 sequences decode while a 900-token prompt joins, with chunked prefill (the spec's
batching.max_batched_tokens and prefill_share) and without (the whole prompt in one step),
beside the same 8 alone. Reports their inter-token latency p50/p99 (and the worst while the
long prompt is prefilled) and the long prompt's time to first token. Then 32 requests at once
whose prompts share a 400-token prefix, with the prefix cache and without: their time to first
token and whether their tokens are the same.

    .venv/bin/python -m scripts.measure.prefill_latency [--model zoo_gpt2_small] [--budget 256]
        [--share 0.8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from handlers.engines.completions import LanguageModel
from handlers.engines.generating import Generating
from scripts.pipeline.export_generation import served_language
from scripts.pipeline.layout import Layout
from scripts.spec import load_spec
from scripts.tasks import task_of

if TYPE_CHECKING:
    from handlers.plan import Generation

RUNNING = 8
LONG_TOKENS = 900
SHARING, PREFIX_TOKENS = 32, 400  # requests sharing a prompt prefix of this many tokens


def run(
    language: LanguageModel,
    budget: int | None,
    share: float,
    long_prompt: str | None,
    steps: int = 40,
) -> dict:
    """8 streams decode; at their 5th step the long prompt joins (asking 4 tokens). Their gaps
    are measured until it has left (and over at least `steps` steps)."""
    generating = Generating(
        language, max_sequences=RUNNING + 1, max_batched_tokens=budget, prefill_share=share
    )
    most = language.limits.max_tokens_limit
    for i in range(RUNNING):
        generating.admit(i, {"prompt": f"Stream {i} says", "max_tokens": most, "stream": True})
    generating.step()  # the 8 prefill together
    last = {i: time.perf_counter() for i in range(RUNNING)}
    gaps: list[float] = []
    during: list[float] = []  # while the long prompt is being prefilled
    joined = time.perf_counter()
    first_token = None
    step = 0
    while step < steps or "long" in generating.requests:
        step += 1
        if step == 5 and long_prompt is not None:
            generating.admit("long", {"prompt": long_prompt, "max_tokens": 4, "stream": True})
            joined = time.perf_counter()
        pieces = generating.step()
        now = time.perf_counter()
        for key in pieces:
            if key == "long":
                first_token = first_token or now - joined
            elif isinstance(key, int):
                gaps.append(now - last[key])
                if long_prompt is not None and step >= 5 and first_token is None:
                    during.append(now - last[key])
                last[key] = now
    return {
        "steps": step,
        "itl_p50_ms": round(float(np.percentile(gaps, 50)) * 1000, 1),
        "itl_p99_ms": round(float(np.percentile(gaps, 99)) * 1000, 1),
        "long_ttft_ms": round(first_token * 1000, 1) if first_token else None,
        # the running streams' worst gap while the long prompt was prefilled, and overall (it
        # then decodes beside them, in a group of its own)
        "itl_max_while_prefilling_ms": round(max(during) * 1000, 1) if during else None,
        "itl_max_ms": round(max(gaps) * 1000, 1),
    }


def shared_prefix(language: LanguageModel, budget: int, cache_mb: int, prefix: str) -> dict:
    """32 requests at once whose prompts share `prefix` (each its own ending): their time to
    first token, p50 and p99, and their tokens."""
    generating = Generating(
        language,
        max_sequences=16,
        max_waiting=64,
        max_batched_tokens=budget,
        prefix_cache_mb=cache_mb,
    )
    started = time.perf_counter()
    for i in range(SHARING):
        generating.admit(i, {"prompt": f"{prefix} Review {i}:", "max_tokens": 4, "stream": True})
    first: dict[int, float] = {}
    tokens: dict[int, list[int]] = {}
    while generating.busy:
        pieces = generating.step()
        now = time.perf_counter()
        for key, made in pieces.items():
            first.setdefault(key, now - started)
            tokens.setdefault(key, []).extend(t for p in made for t in p.token_ids)
    ttft = sorted(first.values())
    return {
        "ttft_p50_ms": round(float(np.percentile(ttft, 50)) * 1000, 1),
        "ttft_p99_ms": round(float(np.percentile(ttft, 99)) * 1000, 1),
        "tokens": [tokens[i] for i in range(SHARING)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="A long prompt joining 8 decoding streams.")
    parser.add_argument("--model", default="zoo_gpt2_small")
    parser.add_argument("--spec", default="models/zoo.yaml")
    parser.add_argument("--budget", type=int, default=None, help="else the spec's")
    parser.add_argument("--share", type=float, default=None, help="prefill_share, else the spec's")
    args = parser.parse_args()
    layout = Layout.of(Path(__file__).resolve().parents[2])
    spec = next(m for m in load_spec(layout.root / args.spec).models if m.name == args.model)
    if not task_of(spec).streams_tokens:  # the task kind says whether it decodes tokens
        raise SystemExit(f"{args.model} is a {spec.task.kind} model: give a generation model")
    limits = cast("Generation", spec.task.generation)  # a generation spec always has its own
    # the streams may run as long as the context allows: they must outlast the long prompt
    limits = limits.model_copy(update={"max_tokens_limit": LONG_TOKENS})
    served = spec.model_copy(update={"task": spec.task.model_copy(update={"generation": limits})})
    language = served_language(
        served, layout, threads=spec.serving.threads, max_choices=RUNNING + 1
    )
    if language.context_length < LONG_TOKENS + 16:
        raise SystemExit(
            f"{args.model}'s context is {language.context_length} tokens: the {LONG_TOKENS}-token "
            "prompt needs a model with a longer one (e.g. zoo_gpt2_small)"
        )
    budget = args.budget or spec.batching.max_batched_tokens
    ids = (language.encode(" the film was long and the battery lasted all day.") * 200)[
        :LONG_TOKENS
    ]
    long_prompt = language.decode(ids)
    share = spec.batching.prefill_share if args.share is None else args.share
    run(language, budget, share, None)  # warm
    chunked = run(language, budget, share, long_prompt)
    # the same streams over as many steps without the long prompt: their contexts grow alike
    alone = run(language, budget, share, None, chunked["steps"])
    report = {
        "model": args.model,
        "running": RUNNING,
        "long_prompt_tokens": len(language.encode(long_prompt)),
        "max_batched_tokens": budget,
        "prefill_share": share,
        "alone": alone,
        "chunked": chunked,
        "whole": run(language, None, 0, long_prompt),  # no budget, no pace: one step
        "itl_p99_ratio_chunked_to_alone": round(chunked["itl_p99_ms"] / alone["itl_p99_ms"], 2),
    }
    prefix = language.decode(ids[:PREFIX_TOKENS])
    cached = shared_prefix(language, budget, 64, prefix)
    uncached = shared_prefix(language, budget, 0, prefix)
    report["shared_prefix"] = {
        "requests": SHARING,
        "prefix_tokens": len(language.encode(prefix)),
        "cached": {k: v for k, v in cached.items() if k != "tokens"},
        "uncached": {k: v for k, v in uncached.items() if k != "tokens"},
        "ttft_p50_ratio": round(cached["ttft_p50_ms"] / uncached["ttft_p50_ms"], 3),
        "tokens_identical": cached["tokens"] == uncached["tokens"],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
