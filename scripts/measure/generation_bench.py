"""`make bench-generation`: a generation model's output tokens/s, time to first token (TTFT) and
inter-token latency (ITL, genai-perf's definition: (last token time - first) / (tokens - 1)),
p50 and p99, streamed at 1, 4, 16 and 64 concurrent requests, on each runtime, for this
project's deployment and the stock one a user writes first (a handler / Python model calling
Hugging Face `generate()` one request at a time, streaming each token), against the in-process
limit: static batched `generate()` in one process, at the same batch as the concurrency, in the
same run, before any server starts.

Every request asks for the same max_tokens on a golden prompt, greedy. Two more cases at 1 and
16 streams, each beside the stock setup given the same requests: prompts sharing a
SHARED_PREFIX_TOKENS-token prefix (what the prefix cache is for; its limit is static batched
`generate()` on those prompts), and structured output (`guided_json`: every token masked by
the schema's grammar; the stock setup cannot constrain and ignores it, so its ratio is the
price of the constraint against unconstrained stock). Writes
reports/bench_generation_<model>.{json,md,png}. No figure here is ever asserted on: the machine
is shared and noisy.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handlers.engines.completions import LanguageModel
from scripts.measure.bench.setups import bench_of
from scripts.measure.generation_report import write_report
from scripts.measure.verify_generation import golden_generation
from scripts.pipeline.export_generation import served_language
from scripts.pipeline.layout import Layout
from scripts.runtimes.calls import GenerateCall
from scripts.spec import ModelSpec

CONCURRENCY = (1, 4, 16, 64)
REQUESTS_PER_STREAM = {1: 8, 4: 4, 16: 2, 64: 1}  # 8, 16, 32 and 64 requests in all
# the targets: tokens/s vs stock at 16 streams, TTFT p50 vs stock at one stream, and
# tokens/s vs the in-process limit at 16 streams
TARGETS = {"vs_stock_c16": 4.0, "ttft_vs_stock_c1": 1.1, "vs_limit_c16": 0.5}
CASE_CONCURRENCY = (1, 16)
SHARED_PREFIX_TOKENS = 64  # within review_gpt's 128-token context, beside a prompt and its answer
REVIEW_SCHEMA = {  # what a review classifier would be asked to answer
    "type": "object",
    "properties": {
        "sentiment": {"enum": ["positive", "negative"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["sentiment", "stars"],
    "additionalProperties": False,  # the object closes: an answer ends when it is whole
}


@dataclass(frozen=True)
class Workload:
    prompts: list[str]
    max_tokens: int
    extra: dict[str, Any] = field(default_factory=dict[str, Any])  # fields every request adds

    def bodies(self, count: int) -> list[dict]:
        return [
            {
                "prompt": self.prompts[i % len(self.prompts)],
                "max_tokens": self.max_tokens,
                **self.extra,
            }
            for i in range(count)
        ]


def cases(work: Workload, language: LanguageModel) -> dict[str, Workload]:
    """The workloads beside the plain one: a shared prefix (the golden prompts run together,
    cut to SHARED_PREFIX_TOKENS tokens) before each prompt, and structured output."""
    text = " ".join(work.prompts * SHARED_PREFIX_TOKENS)
    prefix = language.decode(language.encode(text)[:SHARED_PREFIX_TOKENS])
    return {
        "prefix-shared": Workload([f"{prefix} {p}" for p in work.prompts], work.max_tokens),
        "structured": Workload(work.prompts, work.max_tokens, {"guided_json": REVIEW_SCHEMA}),
    }


def static_batched(language, work: Workload, batch: int) -> float:
    """Output tokens/s of one `generate()` call on `batch` prompts, left-padded (the limit: every
    sequence in one batch from the first step to the last, nothing joining or leaving). A model
    served with a draft is measured with transformers' own speculative decoding (assisted
    generation, one sequence only) where the loop speculates too."""
    import torch

    draft = language.limits.draft
    assistant = language.draft if draft is not None and batch <= min(draft.max_batch, 1) else None

    encoded = [language.encode(b["prompt"]) for b in work.bodies(batch)]
    width = max(map(len, encoded))
    pad = language.end_token
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    started = time.perf_counter()
    with torch.inference_mode():
        made = language.model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=work.max_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=pad,
            **({"assistant_model": assistant} if assistant is not None else {}),
        )
    seconds = time.perf_counter() - started
    return sum(made_tokens(row, pad) for row in made[:, width:].tolist()) / seconds


def made_tokens(row: list[int], end_token: int) -> int:
    return row.index(end_token) if end_token in row else len(row)


def in_process_language(spec: ModelSpec, layout: Layout) -> LanguageModel:
    """The served folder in its served format, in this process with the served thread count."""
    return served_language(spec, layout, threads=spec.serving.threads)


def in_process_limits(
    language: LanguageModel, work: Workload, concurrency: tuple[int, ...] = CONCURRENCY
) -> dict:
    """{concurrency: tokens/s} of static batched generate()."""
    static_batched(language, work, 1)  # warm
    return {c: static_batched(language, work, c) for c in concurrency}


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p99 = np.percentile(np.array(values) * 1000, [50, 99])
    return float(p50), float(p99)


def answered(call: GenerateCall, body: dict) -> dict:
    """The call's answer; a client-side failure (a timeout) counts as a failed request."""
    try:
        return call(body)
    except Exception as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}


def served(call: GenerateCall, work: Workload, concurrency: int) -> dict:
    """`concurrency` clients each streaming REQUESTS_PER_STREAM requests back to back."""
    requests = work.bodies(concurrency * REQUESTS_PER_STREAM[concurrency])
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda body: answered(call, body), requests))
    wall = time.perf_counter() - started
    ok = [a for a in answers if a.get("status") == 200]
    ttft = [a["first_piece_s"] for a in ok if "first_piece_s" in a]
    itl = [
        (a["last_piece_s"] - a["first_piece_s"]) / (len(a["token_ids"]) - 1)
        for a in ok
        if len(a["token_ids"]) > 1 and "last_piece_s" in a
    ]
    ttft_p50, ttft_p99 = percentiles(ttft)
    itl_p50, itl_p99 = percentiles(itl)
    return {
        "concurrency": concurrency,
        "tokens_per_s": sum(len(a["token_ids"]) for a in ok) / wall,
        "tokens_per_request": sum(len(a["token_ids"]) for a in ok) / len(ok) if ok else 0.0,
        "ttft_p50_ms": ttft_p50,
        "ttft_p99_ms": ttft_p99,
        "itl_p50_ms": itl_p50,
        "itl_p99_ms": itl_p99,
        "requests": len(answers),
        "failed": len(answers) - len(ok),
    }


def measure_runtime(runtime, spec, layout, work, more: dict[str, Workload], workdir, log) -> dict:
    """Both setups of one runtime in one server: {setup: {"ready_s", "points", "cases"}}."""
    deployment = bench_of(runtime).generation_deployment(spec, layout, workdir / runtime.name, log)
    with deployment as served_by:
        setups = {}
        for setup, call in served_by.calls.items():
            call(work.bodies(1)[0])  # warm: the first request pays for pages read in
            points = []
            for concurrency in CONCURRENCY:
                points.append(served(call, work, concurrency))
                log(f"{setup} c={concurrency}: {points[-1]['tokens_per_s']:.1f} tokens/s")
            by_case = {}
            for case, case_work in more.items():
                by_case[case] = [served(call, case_work, c) for c in CASE_CONCURRENCY]
                rates = ", ".join(f"{p['tokens_per_s']:.1f}" for p in by_case[case])
                log(f"{setup} {case} c={CASE_CONCURRENCY}: {rates} tokens/s")
            setups[setup] = {"ready_s": served_by.ready_s, "points": points, "cases": by_case}
        return setups


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def comparisons(report: dict) -> dict:
    """Per runtime: this project's figures over its stock setup's and over the limit, and
    whether each target of the issue is met."""
    out = {}
    limits = report["in_process_limit_tokens_per_s"]
    for runtime, stock in report["stock_of"].items():
        ours = {p["concurrency"]: p for p in report["setups"][runtime]["points"]}
        theirs = {p["concurrency"]: p for p in report["setups"][stock]["points"]}
        rate = {c: p["tokens_per_s"] for c, p in ours.items()}
        figures = {
            "vs_stock": {c: ratio(rate[c], theirs[c]["tokens_per_s"]) for c in ours},
            "ttft_vs_stock": {
                c: ratio(ours[c]["ttft_p50_ms"], theirs[c]["ttft_p50_ms"]) for c in ours
            },
            "vs_limit": {c: ratio(rate[c], limits[c]) for c in ours},
        }
        met = {
            "vs_stock_c16": (figures["vs_stock"][16] or 0) >= TARGETS["vs_stock_c16"],
            "ttft_vs_stock_c1": (figures["ttft_vs_stock"][1] or 99) <= TARGETS["ttft_vs_stock_c1"],
            "vs_limit_c16": (figures["vs_limit"][16] or 0) >= TARGETS["vs_limit_c16"],
        }
        out[runtime] = {**figures, "met": met}
    return out


def bench_generation(spec: ModelSpec, layout: Layout, runtimes: list, log) -> dict:
    golden = golden_generation(spec, layout)
    work = Workload(golden["prompts"], golden["max_tokens"])
    log(f"in-process limit (static batched generate(), {spec.serving.threads} threads)")
    language = in_process_language(spec, layout)
    more = cases(work, language)
    report = {
        "model": spec.name,
        "max_tokens": work.max_tokens,
        "threads": spec.serving.threads,
        "concurrency": list(CONCURRENCY),
        "requests_per_stream": REQUESTS_PER_STREAM,
        "targets": TARGETS,
        "in_process_limit_tokens_per_s": in_process_limits(language, work),
        "case_concurrency": list(CASE_CONCURRENCY),
        "cases": {
            "prefix-shared": {
                "shared_prefix_tokens": SHARED_PREFIX_TOKENS,
                "limit_tokens_per_s": in_process_limits(
                    language, more["prefix-shared"], CASE_CONCURRENCY
                ),
            },
            "structured": {"guided_json": REVIEW_SCHEMA, "limit_tokens_per_s": None},
        },
        "setups": {},
        "stock_of": {},
    }
    del language  # the servers' own copies are the ones measured from here
    workdir = layout.run / "bench_generation"
    for runtime in runtimes:
        setups = measure_runtime(runtime, spec, layout, work, more, workdir, log)
        report["setups"].update(setups)
        report["stock_of"][runtime.name] = next(k for k in setups if k != runtime.name)
    report["comparisons"] = comparisons(report)
    report["paths"] = [str(p) for p in write_report(report, layout.reports)]
    return report
