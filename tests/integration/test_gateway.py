"""The gateway (nginx + njs) in front of the real TorchServe and tritonserver of this session, on
a free TLS port: each key's scope on both runtimes' routes and on OpenAI's, answers through it
equal to the runtimes' own, refusals in each API's shape, a client over its rate refused while
another goes on, and a key revoked by a reload while another client's 16 streams finish."""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from scripts import gateway
from scripts.measure.verification import verify_models
from scripts.measure.verify_served import endpoints_for
from scripts.measure.verify_generation import golden_generation
from scripts.runtimes.processes import free_port
from scripts.runtimes.protocols import VIA_GATEWAY
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.spec.access import AccessSpec
from tests.conftest import LAYOUT
from tests.integration.conftest import MODELS

pytestmark = pytest.mark.integration

KEYS = {"digits_app": "digits-key-0123456789", "writer": "writer-key-0123456789"}
KEYS |= {"limited": "limited-key-0123456789", "ops": "ops-key-0123456789"}
KEYS |= {"metered": "metered-key-0123456789"}  # used by the metrics test alone
WRITER = next(m for m in MODELS if m.task.generation is not None)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def policy(port: int, *, revoked: tuple[str, ...] = ()) -> AccessSpec:
    clients = [
        {"name": "digits_app", "models": ["digits_*"]},
        {"name": "writer", "models": [WRITER.name], "streams": 32},
        {"name": "limited", "models": ["digits_*"], "rate": 1, "burst": 2},
        {"name": "ops", "admin": True},
        {"name": "metered", "models": ["digits_*"]},
    ]
    return AccessSpec.model_validate(
        {
            "port": port,
            "clients": [
                {**c, "key_sha256": sha(KEYS[c["name"]])}
                for c in clients
                if c["name"] not in revoked
            ],
        }
    )


@pytest.fixture(scope="module")
def lives(torchserve, triton):
    return [RUNTIMES["torchserve"].attach(torchserve), RUNTIMES["triton"].attach(triton)]


@pytest.fixture(scope="module")
def front(lives, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway")
    port = free_port()
    started = gateway.start(policy(port), LAYOUT.root, folder, lives, MODELS)
    try:
        yield started, port
    finally:
        gateway.stop(folder)


def call(
    front, method: str, path: str, key: str | None = None, png: bool = False, **kwargs
) -> requests.Response:
    started, _ = front
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if png:
        headers["Content-Type"] = "image/png"
    # verified against the gateway's self-signed certificate (made for localhost / 127.0.0.1)
    return requests.request(
        method,
        started.url + path,
        headers=headers,
        verify=started.certificate,
        timeout=60,
        **kwargs,
    )


def digits_png() -> bytes:
    return sorted((LAYOUT.root / "checkpoints/digits_cnn/requests").glob("*.png"))[0].read_bytes()


def digits_infer() -> dict:
    image = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    return {
        "inputs": [
            {
                "name": "image",
                "shape": list(image.shape),
                "datatype": "FP32",
                "data": image.ravel().tolist(),
            }
        ]
    }


def test_a_key_scoped_to_digits_calls_them_on_both_runtimes_and_nothing_else(
    front, torchserve, triton
):
    key = KEYS["digits_app"]
    through = call(front, "POST", "/v2/models/digits_cnn/infer", key, json=digits_infer())
    direct = requests.post(
        f"http://{triton.http_url}/v2/models/digits_cnn/infer", json=digits_infer(), timeout=60
    )
    assert through.status_code == 200, through.text
    assert through.json()["outputs"] == direct.json()["outputs"]
    token = TorchServeClient.for_server(torchserve).token("inference")
    served = call(front, "POST", "/predictions/digits_cnn", key, data=digits_png(), png=True)
    own = requests.post(
        f"{torchserve.inference_url}/predictions/digits_cnn",
        data=digits_png(),
        headers={"Content-Type": "image/png", "Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert served.status_code == 200, served.text
    assert served.json() == own.json()
    for path in (f"/predictions/{WRITER.name}", f"/v2/models/{WRITER.name}/generate"):
        refused = call(front, "POST", path, key, json={"prompt": "The battery"})
        assert refused.status_code == 403, refused.text
        assert f"client 'digits_app' may not call {WRITER.name}" in refused.text
    # each runtime's own error shape
    assert set(call(front, "POST", f"/predictions/{WRITER.name}", key).json()) == {
        "code",
        "type",
        "message",
    }
    assert set(call(front, "POST", f"/v2/models/{WRITER.name}/generate", key).json()) == {"error"}


def counted_for(live, client: str, model: str = "digits_cnn") -> float:
    """torchship_requests_total of `model` under the gateway's `client`, on one runtime."""
    url = live.server.metrics_url
    url = url if url.endswith("/metrics") else url + "/metrics"
    total = 0.0
    for line in requests.get(url, timeout=5).text.splitlines():
        if line.startswith("torchship_requests_total{") and f'client="{client}"' in line:
            if f'model="{model}"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_each_runtime_counts_requests_under_the_gateways_client(front, lives):
    """The gateway names its client to the runtimes; our metrics count it as the `client`
    label on both (Triton through --http-header-forward-pattern), published within a second."""
    key = KEYS["metered"]
    before = {live.name: counted_for(live, "metered") for live in lives}
    for _ in range(3):
        infer = call(front, "POST", "/v2/models/digits_cnn/infer", key, json=digits_infer())
        assert infer.status_code == 200, infer.text
        png = call(front, "POST", "/predictions/digits_cnn", key, data=digits_png(), png=True)
        assert png.status_code == 200, png.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = {live.name: counted_for(live, "metered") for live in lives}
        if all(now[name] >= before[name] + 3 for name in now):
            break
        time.sleep(0.5)
    assert {name: now[name] - before[name] for name in now} == {"torchserve": 3, "triton": 3}


def test_no_key_or_an_unknown_key_is_401_and_health_stays_open_and_plain_http_is_told(front):
    for key in (None, "not-a-key"):
        refused = call(front, "POST", "/v2/models/digits_cnn/infer", key, json=digits_infer())
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith(
            "Bearer"
        )
    assert call(front, "GET", "/v2/health/ready").status_code == 200
    assert call(front, "GET", "/ping").status_code == 200
    plain = requests.get(f"http://127.0.0.1:{front[1]}/v2/models/digits_cnn", timeout=10)
    assert plain.status_code == 400 and "speaks HTTPS only" in plain.json()["error"]


def test_the_runtimes_keys_are_set_by_the_gateway_never_by_the_client(front, torchserve):
    """TorchServe refuses a request without its token; through the gateway the client's own
    key is enough, and TorchServe's token is never needed by (or shown to) the client."""
    bare = requests.get(f"{torchserve.inference_url}/predictions/digits_cnn", timeout=10)
    assert bare.status_code == 400 and "Token Authorization failed" in bare.text
    token = TorchServeClient.for_server(torchserve).token("inference")
    answer = call(
        front, "POST", "/predictions/digits_cnn", KEYS["digits_app"], data=digits_png(), png=True
    )
    assert answer.status_code == 200, answer.text  # TorchServe took the gateway's token
    assert token not in answer.text and "logits" in answer.json()["outputs"]


def test_admin_apis_need_an_admin_client(front):
    assert call(front, "GET", "/models", KEYS["digits_app"]).status_code == 403
    listed = call(front, "GET", "/models", KEYS["ops"])
    assert listed.status_code == 200 and "digits_cnn" in listed.text
    stats = call(front, "GET", "/v2/models/digits_cnn/stats", KEYS["digits_app"])
    assert stats.status_code == 403
    assert call(front, "GET", "/v2/models/digits_cnn/stats", KEYS["ops"]).status_code == 200


def test_the_openai_client_sees_and_calls_only_its_models(front):
    import httpx2
    from openai import OpenAI, PermissionDeniedError

    tls = ssl.create_default_context(cafile=str(front[0].certificate))

    def client(name: str) -> OpenAI:
        return OpenAI(
            base_url=front[0].url + "/v1",
            api_key=KEYS[name],
            max_retries=0,
            http_client=httpx2.Client(verify=tls, timeout=60),
        )

    golden = golden_generation(WRITER, LAYOUT)
    writer = client("writer")
    assert [m.id for m in writer.models.list().data] == [WRITER.name]
    answer = writer.completions.create(
        model=WRITER.name,
        prompt=golden["prompts"][0],
        max_tokens=golden["max_tokens"],
        temperature=0,
    )
    assert answer.choices[0].text == golden["texts"][0]
    digits = client("digits_app")
    assert [m.id for m in digits.models.list().data] == []
    with pytest.raises(PermissionDeniedError, match="may not call"):
        digits.completions.create(model=WRITER.name, prompt="The battery", max_tokens=2)


def test_a_client_over_its_rate_gets_429_while_another_goes_on(front):
    limited = [call(front, "GET", "/v2/models/digits_cnn", KEYS["limited"]) for _ in range(12)]
    statuses = [r.status_code for r in limited]
    assert statuses[:3] == [200, 200, 200]  # the rate's one plus a burst of two
    assert 429 in statuses
    refused = next(r for r in limited if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1 and "over its rate" in refused.json()["error"]
    others = [call(front, "GET", "/v2/models/digits_cnn", KEYS["digits_app"]) for _ in range(12)]
    assert {r.status_code for r in others} == {200}


def test_a_revoked_key_is_refused_after_a_reload_while_16_streams_finish(front, lives):
    started, port = front
    golden = golden_generation(WRITER, LAYOUT)
    body = {"prompt": golden["prompts"][0], "max_tokens": golden["max_tokens"]}
    reloaded = threading.Event()

    def stream(_: int) -> list[dict]:
        answers = []
        while len(answers) < 3 or not reloaded.is_set() and len(answers) < 200:
            reply = call(
                front,
                "POST",
                "/v1/completions",
                KEYS["writer"],
                json={"model": WRITER.name, **body, "temperature": 0, "stream": True},
            )
            answers.append({"status": reply.status_code, "text": reply.text})
        return answers

    with ThreadPoolExecutor(16) as pool:
        streams = [pool.submit(stream, i) for i in range(16)]
        assert call(front, "GET", "/v2/models/digits_cnn", KEYS["digits_app"]).status_code == 200
        gateway.reload(
            policy(port, revoked=("digits_app",)), LAYOUT.root, started.folder, lives, MODELS
        )
        reloaded.set()
        answers = [a for s in streams for a in s.result()]
    assert {a["status"] for a in answers} == {200}
    assert all(a["text"].rstrip().endswith("data: [DONE]") for a in answers)
    assert call(front, "GET", "/v2/models/digits_cnn", KEYS["digits_app"]).status_code == 401
    assert call(front, "GET", f"/v2/models/{WRITER.name}", KEYS["writer"]).status_code == 200
    gateway.reload(policy(port), LAYOUT.root, started.folder, lives, MODELS)  # as it was


def test_verify_through_a_gateway_of_its_own_equals_eager_and_a_wrong_key_fails_it(
    torchserve, triton, lives, tmp_path
):
    """`make verify` with `access:` in the spec: each HTTP endpoint again through a gateway
    it starts (never the user's), answers equal to eager; the same checks with a key the
    gateway does not know fail, so they did go through it."""
    digits = next(m for m in MODELS if m.name == "digits_cnn")
    servers = {"torchserve": torchserve, "triton": triton}
    with gateway.fronting(lives, MODELS, LAYOUT.root, tmp_path / "gw") as passage:
        checks = verify_models([digits], LAYOUT, endpoints_for(servers, passage))
        wrong = replace(passage, key="not-a-key")
        refused = verify_models([digits], LAYOUT, endpoints_for(servers, wrong))
    gated = [c for c in checks if c.endpoint.endswith(VIA_GATEWAY)]
    assert {c.endpoint for c in gated} == {
        f"torchserve-rest{VIA_GATEWAY}",
        f"triton-http{VIA_GATEWAY}",
        f"torchserve-rest (requests){VIA_GATEWAY}",
        f"triton-ensemble-http{VIA_GATEWAY}",
    }
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    failed = {c.endpoint for c in refused if not c.passed}
    assert failed == {c.endpoint for c in gated}
    assert gateway.running(tmp_path / "gw") is None  # stopped on the way out
