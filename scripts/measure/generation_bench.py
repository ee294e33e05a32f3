"""`make bench-generation`: a generation model's output tokens per second and time to first
token, served, at 1, 4 and 16 concurrent streams, against one-request-at-a-time `generate()` in
one process (what a worker without in-flight batching does) and the in-process decode loop with
every request in flight (the limit of in-flight batching on this machine), in one run.

Each stream asks for the spec's default max_tokens on a golden prompt, greedy; a request that
ends early (end token) counts the tokens it made. Writes reports/bench_generation_<model>.json.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import GenerateCall
from scripts.spec import ModelSpec

CONCURRENCY = (1, 4, 16)
ROUNDS = 3  # requests per stream at each concurrency


def bodies(golden: dict, count: int) -> list[dict]:
    prompts = golden["prompts"]
    return [
        {"prompt": prompts[i % len(prompts)], "max_tokens": golden["max_tokens"]}
        for i in range(count)
    ]


def in_process(spec: ModelSpec, layout: Layout, golden: dict) -> dict:
    """generate() one request at a time, and the decode loop with all 16 in flight."""
    import torch

    from handlers.completions import LanguageModel
    from scripts.pipeline.export_generation import eager_tokens, run_together

    torch.set_num_threads(spec.serving.threads)
    language = LanguageModel(layout.artifact_dir(spec) / "pretrained", spec.task.generation)
    started = time.perf_counter()
    made = eager_tokens(language, golden["prompts"], golden["max_tokens"])["token_ids"]
    alone_s = time.perf_counter() - started
    started = time.perf_counter()
    together = run_together(language, bodies(golden, len(golden["prompts"])))
    together_s = time.perf_counter() - started
    return {
        "generate() one at a time": sum(map(len, made)) / alone_s,
        "decode loop, 16 in flight": sum(len(a["token_ids"]) for a in together) / together_s,
    }


def served(call: GenerateCall, golden: dict, concurrency: int) -> dict:
    requests = bodies(golden, concurrency * ROUNDS)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(call, requests))
    wall = time.perf_counter() - started
    failed = [a for a in answers if a.get("status") != 200]
    firsts = [a["first_piece_s"] for a in answers if "first_piece_s" in a]
    return {
        "tokens_per_s": sum(len(a.get("token_ids", [])) for a in answers) / wall,
        "ttft_p50_ms": 1000 * statistics.median(firsts) if firsts else None,
        "requests": len(answers),
        "failed": len(failed),
    }


def bench_generation(spec: ModelSpec, layout: Layout, calls: dict[str, GenerateCall]) -> dict:
    """{setup: figures}: the in-process references, then each streaming endpoint per
    concurrency, with its ratio to one-at-a-time generate()."""
    from scripts.measure.verify_generation import golden_generation

    golden = golden_generation(spec, layout)
    reference = in_process(spec, layout, golden)
    baseline = reference["generate() one at a time"]
    report = {"model": spec.name, "in_process_tokens_per_s": reference, "served": {}}
    for name, call in calls.items():
        if "stream" not in name:
            continue
        for concurrency in CONCURRENCY:
            figures = served(call, golden, concurrency)
            figures["vs_generate_one_at_a_time"] = figures["tokens_per_s"] / baseline
            report["served"][f"{name} c={concurrency}"] = figures
    path = layout.reports / f"bench_generation_{spec.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = path
    return report
