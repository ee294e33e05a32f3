"""`make bench-generation`'s deployments on real servers: on each runtime, this project's
generation model and the stock setup (Hugging Face generate() one request at a time) side by
side in one server, both streaming eager generate()'s greedy tokens, and the bench's measurement
of a stream count on them. (The figures themselves are never asserted: the machine is shared.)"""

from __future__ import annotations

import pytest

from scripts.measure.generation_bench import Workload, served
from scripts.measure.verify_generation import golden_generation
from scripts.runtimes.registry import RUNTIMES
from tests.conftest import EXAMPLES, LAYOUT

pytestmark = pytest.mark.integration
SPEC = next(m for m in EXAMPLES if m.task.generation is not None)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_stock_and_ours_stream_eager_tokens_side_by_side(runtime, built_examples, tmp_path):
    golden = golden_generation(SPEC, LAYOUT)
    body = {"prompt": golden["prompts"][-1], "max_tokens": golden["max_tokens"]}
    deployment = RUNTIMES[runtime].bench.generation_deployment(SPEC, LAYOUT, tmp_path, print)
    with deployment as deployed:
        assert set(deployed.calls) == {runtime, f"{runtime}_stock"}
        assert deployed.ready_s > 0
        for setup, call in deployed.calls.items():
            answer = call(body)
            assert answer["token_ids"] == golden["token_ids"][-1], (setup, answer)
            assert answer["pieces"] >= len(answer["token_ids"]) > 1, (setup, answer)  # streamed
            figures = served(call, Workload(golden["prompts"], 4), 4)
            assert figures["failed"] == 0 and figures["requests"] == 16, (setup, figures)
            assert figures["ttft_p50_ms"] > 0 and figures["itl_p50_ms"] > 0, (setup, figures)
