"""make bench-generation's arithmetic and report: TTFT and ITL from what a stream client saw,
failures counted, ratios to stock and to the in-process limit, the targets said as met or
missed, the Markdown and the PNG written. No server, no timing asserted."""

from __future__ import annotations

import pytest

from scripts.measure import generation_bench as bench
from scripts.measure.generation_report import markdown, write_report
from tests.unit.handlers.conftest import folder  # noqa: F401  the tiny GPT-2's folder (fixture)

WORK = bench.Workload(["a", "b"], max_tokens=5)
CASES = ("prefix-shared", "structured")


def answer(first: float, last: float, tokens: int, status: int = 200) -> dict:
    return {
        "status": status,
        "token_ids": list(range(tokens)),
        "first_piece_s": first,
        "last_piece_s": last,
    }


def test_served_reads_ttft_and_inter_token_latency_as_genai_perf_defines_them():
    answers = iter([answer(0.010, 0.050, 5), answer(0.030, 0.110, 5)] * 4)
    figures = bench.served(lambda body: next(answers), WORK, 1)
    assert figures["requests"] == 8 and figures["failed"] == 0
    assert figures["ttft_p50_ms"] == pytest.approx(20.0)
    assert figures["itl_p50_ms"] == pytest.approx(15.0)  # (40 ms / 4 + 80 ms / 4) / 2
    assert figures["itl_p99_ms"] == pytest.approx(20.0, rel=0.02)


def test_failed_requests_are_counted_and_make_no_tokens():
    answers = iter([answer(0.01, 0.05, 5), {"status": 400, "error": "max_tokens"}] * 4)
    figures = bench.served(lambda body: next(answers), WORK, 1)
    assert figures["failed"] == 4
    assert figures["tokens_per_s"] > 0


def point(c: int, rate: float, ttft: float) -> dict:
    return {
        "concurrency": c,
        "tokens_per_s": rate,
        "ttft_p50_ms": ttft,
        "ttft_p99_ms": ttft,
        "itl_p50_ms": 1.0,
        "itl_p99_ms": 2.0,
        "requests": c,
        "failed": 0,
    }


def report() -> dict:
    stock = [point(c, 10.0, 20.0) for c in bench.CONCURRENCY]
    ours = [point(c, 10.0 * min(c, 8), 21.0) for c in bench.CONCURRENCY]
    cases = bench.CASE_CONCURRENCY
    stock_cases = {case: [point(c, 10.0, 20.0) for c in cases] for case in CASES}
    our_cases = {  # the shared prefix as fast as plain, structured at half its rate
        "prefix-shared": [point(c, 10.0 * min(c, 8), 12.0) for c in cases],
        "structured": [point(c, 5.0 * min(c, 8), 21.0) for c in cases],
    }
    return {
        "model": "lm",
        "max_tokens": 5,
        "threads": 1,
        "concurrency": list(bench.CONCURRENCY),
        "requests_per_stream": bench.REQUESTS_PER_STREAM,
        "targets": bench.TARGETS,
        "in_process_limit_tokens_per_s": {c: 20.0 * c for c in bench.CONCURRENCY},
        "case_concurrency": list(bench.CASE_CONCURRENCY),
        "cases": {
            "prefix-shared": {
                "shared_prefix_tokens": bench.SHARED_PREFIX_TOKENS,
                "limit_tokens_per_s": {c: 20.0 * c for c in bench.CASE_CONCURRENCY},
            },
            "structured": {"guided_json": bench.REVIEW_SCHEMA, "limit_tokens_per_s": None},
        },
        "setups": {
            "torchserve_stock": {"ready_s": 3.0, "points": stock, "cases": stock_cases},
            "torchserve": {"ready_s": 3.0, "points": ours, "cases": our_cases},
        },
        "stock_of": {"torchserve": "torchserve_stock"},
    }


def test_ratios_to_stock_and_the_limit_and_which_targets_are_met():
    measured = report()
    compared = bench.comparisons(measured)["torchserve"]
    assert compared["vs_stock"][16] == pytest.approx(8.0)
    assert compared["ttft_vs_stock"][1] == pytest.approx(1.05)
    assert compared["vs_limit"][16] == pytest.approx(0.25)
    assert compared["met"] == {
        "vs_stock_c16": True,
        "ttft_vs_stock_c1": True,
        "vs_limit_c16": False,
    }


def test_the_report_says_each_target_and_draws_the_plot(tmp_path):
    measured = report()
    measured["comparisons"] = bench.comparisons(measured)
    paths = write_report(measured, tmp_path)
    assert [p.suffix for p in paths] == [".json", ".md", ".png"]
    assert all(p.stat().st_size > 0 for p in paths)
    text = markdown(measured, "plot.png")
    assert "8.00x of stock (target ≥ 4.0x): met" in text
    assert "0.25x of the in-process limit (target ≥ 0.5x): MISSED" in text
    assert "| torchserve | 16 | 80 | 8.00x | 0.25x | 21.0 / 21.0 | 1.0 / 2.0 | 0 |" in text
    # the cases: beside stock, beside the same setup's plain figure, and the limit where one is
    assert "| prefix-shared | torchserve | 16 | 80 | 0.0 | 8.00x | 1.00x | 0.25x |" in text
    assert "| structured | torchserve | 16 | 40 | 0.0 | 4.00x | 0.50x | - |" in text


def test_the_cases_send_a_shared_prefix_and_a_schema_on_top_of_the_plain_requests(folder):  # noqa: F811
    from handlers.engines.completions import LanguageModel
    from tests.unit.handlers.conftest import LIMITS

    language = LanguageModel(folder, LIMITS)
    work = bench.Workload(["the film", "the food was"], max_tokens=4)
    cases = bench.cases(work, language)
    shared = cases["prefix-shared"].bodies(2)
    prefix = shared[0]["prompt"][: -len(" the film")]
    assert shared[1]["prompt"] == f"{prefix} the food was"
    assert len(language.encode(prefix)) >= bench.SHARED_PREFIX_TOKENS - 2  # cut by tokens
    structured = cases["structured"].bodies(1)[0]
    assert structured == {"prompt": "the film", "max_tokens": 4, "guided_json": bench.REVIEW_SCHEMA}
