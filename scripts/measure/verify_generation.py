"""`make verify` for a generation model: every endpoint, streamed and whole, gives exactly the
token ids of eager `generate(do_sample=False)` (golden_generation.json, written by export), each
golden prompt alone and all 16 in flight together; a streamed answer comes in one piece per
token; a seeded sampled request gives the same text twice; a request over the model's limit
gets a 400 naming the field. TorchServe and Triton are compared through these same goldens.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from scripts.pipeline.layout import Layout
from scripts.runtimes.calls import GenerateCall
from scripts.spec import ModelSpec

SEEDED = {"prompt": "This film", "temperature": 0.8, "top_p": 0.95, "top_k": 40, "seed": 11}


def golden_generation(spec: ModelSpec, layout: Layout) -> dict:

    return json.loads(layout.artifact(spec).golden_generation.read_text())


def mismatches(answers: list[dict], golden: dict) -> list[str]:
    return [
        f"{prompt!r}: got {a.get('token_ids')} ({a.get('error', a.get('finish_reason'))}), "
        f"eager {want}"
        for prompt, a, want in zip(golden["prompts"], answers, golden["token_ids"])
        if a.get("status") != 200 or a.get("token_ids") != want
    ]


def check(model: str, endpoint: str, samples: int, wrong: float, passed: bool, detail: str):
    """One row of reports/verify.json (verify_served.Check's fields)."""
    return {
        "model": model,
        "endpoint": endpoint,
        "samples": samples,
        "max_abs_error": wrong,
        "passed": passed,
        "detail": detail,
    }


def check_endpoint(spec: ModelSpec, name: str, call: GenerateCall, golden: dict) -> list:
    bodies = [{"prompt": p, "max_tokens": golden["max_tokens"]} for p in golden["prompts"]]
    alone = [call(body) for body in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(call, bodies))
    checks = []
    for label, answers in (("alone", alone), (f"{len(bodies)} in flight", together)):
        wrong = mismatches(answers, golden)
        streamed = all(a.get("pieces", 1e9) >= len(a.get("token_ids", [])) for a in answers)
        detail = "; ".join(wrong[:2]) or (
            "token ids equal eager generate()"
            if streamed
            else "answered in fewer pieces than tokens: not streamed token by token"
        )
        checks.append(
            check(
                spec.name,
                f"{name} ({label})",
                len(bodies),
                float(len(wrong)),
                not wrong and streamed,
                detail,
            )
        )
    seeded = {**SEEDED, "max_tokens": golden["max_tokens"]}
    twice = [call(seeded), call(seeded)]
    same = twice[0].get("status") == 200 and twice[0].get("text") == twice[1].get("text")
    checks.append(
        check(
            spec.name,
            f"{name} (seeded sampling twice)",
            2,
            0.0 if same else 1.0,
            same,
            f"{twice[0].get('text')!r}" if same else f"differs: {twice}",
        )
    )
    generation = spec.task.generation
    assert generation, "a generation model's task has its generation: settings (spec validation)"
    over = call({"prompt": "The", "max_tokens": generation.max_tokens_limit + 1})
    refused = over.get("status") == 400 and "max_tokens" in json.dumps(over)
    checks.append(
        check(
            spec.name,
            f"{name} (max_tokens over the limit)",
            1,
            0.0 if refused else 1.0,
            refused,
            "400 naming max_tokens" if refused else f"answered {over}",
        )
    )
    return checks


def check_generation(spec: ModelSpec, layout: Layout, calls: dict[str, GenerateCall]) -> list:
    golden = golden_generation(spec, layout)
    return [c for name, call in calls.items() for c in check_endpoint(spec, name, call, golden)]
