"""Processes killed under load (16 clients on digits_cnn, REST/HTTP and gRPC): only requests in
flight when a process dies may fail, and the model recovers by itself.
- TorchServe: kill -9 of one of the two workers; TorchServe starts a new one.
- Triton: kill -9 of the model's Python-backend stub; Triton never restarts it (the instance
  hangs, the model reads READY), so the watchdog beside the server reloads the model.
Figures are printed (pytest -s) for the record; no timing is asserted beyond the 10 s recovery
bound the watchdog promises."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest

from scripts.measure.traffic import Traffic, summary
from scripts.runtimes.protocols import BuildOptions, StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.triton import server as triton_server
from scripts.runtimes.triton.watchdog import LOG, stubs
from scripts.tasks import task_of
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

SPEC = load_spec(REPO / "models.yaml").select(["digits_cnn"])[0]
CLIENTS_PER_ENDPOINT = 8


def wait_for(condition, timeout_s: float, what: str) -> float:
    """Seconds until condition() held (polled every 50 ms); fails the test after timeout_s."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def under_load(runtime: str, server, kill, recovered, timeout_s: float = 10):
    """Load for 1 s, kill, wait for recovery, load 2 s more; (answers, kill time, recovery s)."""
    task = task_of(SPEC)
    inputs, expected = task.expected_outputs(SPEC, [SPEC.version], LAYOUT)
    with Traffic(
        SPEC, task.clients({runtime: server}, SPEC, CLIENTS_PER_ENDPOINT), expected, inputs
    ) as traffic:
        time.sleep(1.0)
        killed_at = time.monotonic()
        kill()
        recovery_s = wait_for(recovered, timeout_s, f"{runtime} recovered")
        time.sleep(2.0)
    return traffic.answers, killed_at, recovery_s


def report(runtime: str, answers, killed_at: float, recovery_s: float) -> dict:
    figures = {
        "runtime": runtime,
        "clients": 2 * CLIENTS_PER_ENDPOINT,
        "recovery_s": round(recovery_s, 3),
        "before kill": summary(answers, until=killed_at),
        "after kill": summary(answers, since=killed_at),
    }
    print(json.dumps(figures))
    return figures


def only_in_flight_failed(answers, killed_at: float) -> None:
    """Failed requests were all sent before the server could know of the death (before the first
    failure was answered), so each client had at most one of them."""
    failed = [a for a in answers if a.error]
    if not failed:
        return
    known = min(a.started + a.latency_ms / 1000 for a in failed)
    assert known >= killed_at, failed[:3]
    late = [a for a in failed if a.started > known]
    assert not late, f"{len(late)} requests sent after the death was known failed: {late[:3]}"
    per_client = Counter(a.client_id for a in failed)
    assert max(per_client.values()) == 1, per_client  # at most one in flight per client


def none_failed_after_the_reload(answers, killed_at: float, reloaded_at: float) -> None:
    """Triton keeps sending requests to a dead stub's instance (each fails after its ~1 s health
    check) until the watchdog's reload is READY: failures are bounded by the reload, not by the
    first failure answered (CI once saw one request sent 4 ms after that fail)."""
    failed = [a for a in answers if a.error]
    assert all(a.started + a.latency_ms / 1000 >= killed_at for a in failed), failed[:3]
    late = [a for a in failed if a.started > reloaded_at]
    assert not late, f"{len(late)} requests sent after the reload failed: {late[:3]}"


@pytest.fixture()
def torchserve(built_examples, tmp_path):
    plugin = RUNTIMES["torchserve"]
    server = plugin.server.start(
        [SPEC],
        LAYOUT,
        StartOptions(workdir=tmp_path / "ts", free_ports=True, timeout_s=240, managed=False),
    )
    try:
        yield server
    finally:
        plugin.server.stop(server.workdir)


@pytest.fixture(params=[1, 2], ids=["1 instance", "2 instances"])
def triton(built_examples, tmp_path, request):
    """digits_cnn with one Python-backend instance (the spec's), or two: one stub killed, the
    other instance keeps answering."""
    plugin = RUNTIMES["triton"]
    repo = tmp_path / "repo"
    spec = SPEC.model_copy(
        update={"serving": SPEC.serving.model_copy(update={"instances": request.param})}
    )
    plugin.artifacts.build([spec], LAYOUT, BuildOptions(out=repo))
    server = plugin.server.start(
        [spec],
        LAYOUT,
        StartOptions(
            workdir=tmp_path / "triton",
            free_ports=True,
            timeout_s=240,
            artifacts=repo,
            names=["digits_cnn"],
            managed=True,
        ),
    )
    try:
        yield server
    finally:
        plugin.server.stop(server.workdir)


def test_a_killed_torchserve_worker_fails_only_its_requests_in_flight_and_comes_back(torchserve):
    client = TorchServeClient.for_server(torchserve)
    problems = RUNTIMES["torchserve"].versions.rollout_problems(
        torchserve, SPEC
    )  # started without the model API
    assert problems and "`make stop` then `make serve`" in problems[0]

    def two_ready_workers() -> set[int] | None:
        """Their pids once both workers are READY with a process (one still starting has pid
        -1, and os.kill(-1, SIGKILL) kills every process of the user: a CI run died of it)."""
        workers = [w for entry in client.describe(SPEC.name) for w in entry["workers"]]
        ready = len(workers) == 2 and all(w["status"] == "READY" and w["pid"] > 0 for w in workers)
        return {w["pid"] for w in workers} if ready else None

    wait_for(two_ready_workers, 120, "two READY TorchServe workers")
    before = client.worker_pids(SPEC.name)
    assert len(before) == 2 and all(pid > 0 for pid in before), before

    def recovered() -> bool:
        pids = two_ready_workers()
        return pids is not None and pids != set(before)

    answers, killed_at, recovery_s = under_load(
        "torchserve", torchserve, lambda: os.kill(before[0], signal.SIGKILL), recovered, 60
    )
    figures = report("torchserve", answers, killed_at, recovery_s)
    only_in_flight_failed(answers, killed_at)
    assert figures["after kill"]["requests"] > figures["after kill"]["failed"]
    assert before[1] in client.worker_pids(SPEC.name)  # the other worker served on


def test_a_killed_triton_stub_is_detected_and_its_model_reloaded_within_10s(triton):
    stub = next(
        pid for pid, (model, _) in stubs(triton_server.pid(triton)).items() if model == SPEC.name
    )
    log = triton.workdir / LOG
    wait_for(lambda: log.exists(), 10, "the watchdog started")

    def recovered() -> bool:
        events = [json.loads(line) for line in log.read_text().splitlines()]
        return any(e["event"].startswith("stub died") and e["model"] == SPEC.name for e in events)

    answers, killed_at, recovery_s = under_load(
        "triton", triton, lambda: os.kill(stub, signal.SIGKILL), recovered, 10
    )
    figures = report("triton", answers, killed_at, recovery_s)
    none_failed_after_the_reload(answers, killed_at, killed_at + recovery_s)
    assert figures["after kill"]["requests"] > figures["after kill"]["failed"]
    alive = stubs(triton_server.pid(triton))
    assert any(model == SPEC.name for pid, (model, _) in alive.items() if pid != stub)
    late = [a for a in answers if a.started > killed_at + recovery_s + 0.5]
    assert late and all(not a.error for a in late)
    assert triton_server.model_ready(triton, SPEC.name)
