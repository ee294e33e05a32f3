"""`make monitor` for real: Prometheus (Debian's) scraping TorchServe and tritonserver as
`make serve` runs them, with the generated rules. After traffic through every model and endpoint,
Prometheus holds our series with the counts sent; a killed TorchServe worker and a killed Triton
stub each fire the ModelRestarted alert."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter

import numpy as np
import pytest

from scripts.measure.verify_generation import golden_generation
from scripts.monitor import prometheus
from scripts.pipeline.paths import golden_examples
from scripts.runtimes.processes import free_port
from scripts.runtimes.protocols import StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.triton import server as triton_server
from scripts.runtimes.triton.client import TritonClient
from scripts.runtimes.triton.watchdog import stubs
from tests.conftest import LAYOUT
from tests.integration.conftest import MODELS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="`make install` installs it"),
]
TENSOR_MODELS = [m for m in MODELS if m.task.generation is None]
GENERATION = [m for m in MODELS if m.task.generation is not None]
DIGITS = next(m for m in MODELS if m.name == "digits_cnn")


@pytest.fixture(scope="module")
def servers(built_examples, triton_repo_dir, tmp_path_factory):
    """Both runtimes as `make serve` runs them (Triton with its stub watchdog)."""
    started = {}
    options = {
        "torchserve": StartOptions(managed=False),
        "triton": StartOptions(
            artifacts=triton_repo_dir,
            names=triton_server.repository_models(triton_repo_dir),
            managed=True,
        ),
    }
    try:
        for name, extra in options.items():
            workdir = tmp_path_factory.mktemp(name)
            started[name] = RUNTIMES[name].server.start(
                MODELS,
                LAYOUT,
                StartOptions(
                    workdir=workdir,
                    free_ports=True,
                    timeout_s=240,
                    artifacts=extra.artifacts,
                    names=extra.names,
                    managed=extra.managed,
                ),
            )
        yield started
    finally:
        for name, server in started.items():
            RUNTIMES[name].server.stop(server.workdir)


@pytest.fixture(scope="module")
def monitor(servers, tmp_path_factory):
    targets = {name: server.metrics_address for name, server in servers.items()}
    server = prometheus.start(
        tmp_path_factory.mktemp("prometheus"), targets, MODELS, "torchship test", free_port()
    )
    try:
        wait_for(lambda: len(prometheus.query(server, "up == 1")) == len(targets), 60, "scrapes")
        yield server
    finally:
        prometheus.stop(server.workdir)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def counted(server, metric: str, by: str = "job, model") -> Counter:
    """{(label values...): value} of sum by (<by>) (metric) in Prometheus now."""
    keys = [k.strip() for k in by.split(",")]
    return Counter(
        {
            tuple(r["metric"].get(k, "") for k in keys): round(float(r["value"][1]))
            for r in prometheus.query(server, f"sum by ({by}) ({metric})")
        }
    )


def send_traffic(servers) -> tuple[Counter, Counter]:
    """Every golden example through every tensor endpoint, a completion through every
    generation endpoint, junk bytes to digits_cnn; (requests sent, refusals) by (job, model)."""
    sent, refused = Counter(), Counter()
    for name, server in servers.items():
        endpoints = RUNTIMES[name].endpoints
        for call in endpoints.tensor_endpoints(server).values():
            for spec in TENSOR_MODELS:
                for example in golden_examples(spec, LAYOUT, 2):
                    call(spec, example)
                    sent[name, spec.name] += 1
        for spec in GENERATION:
            golden = golden_generation(spec, LAYOUT)  # its longest answer: tokens have gaps
            longest = max(range(len(golden["prompts"])), key=lambda i: len(golden["token_ids"][i]))
            for call in endpoints.generation_endpoints(server, spec).values():
                answer = call({"prompt": golden["prompts"][longest], "max_tokens": 3})
                assert answer.get("status", 200) == 200, answer
                sent[name, spec.name] += 1
        sent[name, DIGITS.name] += 1
        refused[name, DIGITS.name] += 1
    reply = TorchServeClient.for_server(servers["torchserve"]).predict_raw(
        DIGITS.name, b"junk", "image/png"
    )
    assert reply.status_code == 400, reply.text
    junk = np.array([[b"junk"]], dtype=np.object_)
    with pytest.raises(Exception, match="cannot decode image"):
        TritonClient(servers["triton"].http_url).infer(
            f"{DIGITS.name}_ensemble", {DIGITS.task.preprocess.ensemble_input: junk}
        )
    return sent, refused


def test_prometheus_counts_every_request_sent_to_every_model_on_both_runtimes(servers, monitor):
    before = counted(monitor, "torchship_requests_total")
    rejected_before = counted(monitor, "torchship_rejected_total")
    sent, refused = send_traffic(servers)
    # Triton counts an ensemble's request at its pre-processing model (format "encoded") and
    # again at the model (format "tensors"): the junk never reached the model.
    expected = before + sent

    def arrived():
        now = counted(monitor, "torchship_requests_total")
        return now if all(now[k] >= v for k, v in expected.items()) else None

    now = wait_for(arrived, 60, "the requests sent to show in Prometheus")
    time.sleep(6)  # one more scrape: nothing beyond what was sent arrives
    now = counted(monitor, "torchship_requests_total")
    assert {k: now[k] for k in expected} == dict(expected)
    rejected = counted(monitor, "torchship_rejected_total", "job, model, reason")
    for (job, model), count in refused.items():
        assert rejected[job, model, "decode"] - rejected_before[job, model] == count
    # every model ran batches and timed its stages on both runtimes
    stages = counted(monitor, "torchship_stage_seconds_count", "job, model, stage")
    for job in servers:
        for spec in MODELS:
            assert stages[job, spec.name, "model"] > 0, (job, spec.name)
            assert stages[job, spec.name, "preprocess"] > 0, (job, spec.name)
    rows = counted(monitor, "torchship_batch_rows_total")
    assert all(rows[job, spec.name] > 0 for job in servers for spec in MODELS)
    # a generation model's own: first tokens, their gaps, whole requests and tokens, by job
    for metric in (
        "torchship_time_to_first_token_seconds_count",
        "torchship_inter_token_latency_seconds_count",
        "torchship_e2e_request_latency_seconds_count",
        "torchship_generation_tokens_total",
        "torchship_prompt_tokens_total",
        "torchship_prefix_cache_queries_total",
    ):
        seen = counted(monitor, metric)
        assert all(seen[job, spec.name] > 0 for job in servers for spec in GENERATION), (
            metric,
            seen,
        )
    # its gauges: published on both runtimes, back to nothing decoding, waiting or held
    for gauge in (
        "torchship_num_requests_running",
        "torchship_num_requests_waiting",
        "torchship_kv_cache_usage_perc",
    ):
        levels = {
            (r["metric"]["job"], r["metric"]["model"]): float(r["value"][1])
            for r in prometheus.query(monitor, gauge)
        }
        for job in servers:
            for spec in GENERATION:
                assert levels.get((job, spec.name)) == 0, (gauge, levels)
    latencies = prometheus.query(monitor, 'nv_inference_request_summary_us{quantile="0.99"}')
    assert {r["metric"]["model"] for r in latencies} >= {m.name for m in TENSOR_MODELS}


def firing(monitor, alert: str, job: str, model: str) -> bool:
    return any(
        a["labels"]["alertname"] == alert
        and a["labels"].get("job") == job
        and a["labels"].get("model") == model
        and a["state"] == "firing"
        for a in prometheus.alerts(monitor)
    )


def test_a_killed_stub_or_worker_fires_the_restart_alert(servers, monitor):
    assert not firing(monitor, "ModelRestarted", "triton", DIGITS.name)
    triton = servers["triton"]
    stub = next(
        pid for pid, (model, _) in stubs(triton_server.pid(triton)).items() if model == DIGITS.name
    )
    os.kill(stub, signal.SIGKILL)
    wait_for(lambda: firing(monitor, "ModelRestarted", "triton", DIGITS.name), 90, "the alert")

    torchserve = servers["torchserve"]
    workers = TorchServeClient.for_server(torchserve).worker_pids(DIGITS.name)
    assert workers, "no digits_cnn worker with a pid"
    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: firing(monitor, "ModelRestarted", "torchserve", DIGITS.name), 120, "alert")
    # the others were not restarted
    assert not firing(monitor, "ModelRestarted", "torchserve", "tabular_mlp")
