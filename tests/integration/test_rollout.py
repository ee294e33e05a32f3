"""Versions and zero-downtime rollout against real servers on free ports, in a scratch checkout
serving digits_cnn only: version 2 (trained longer) is rolled out and back while 24 clients hit
both runtimes over REST/HTTP and gRPC, unversioned and naming version 1; every answer is checked
against each version's eager outputs. A broken version 3 (untrained weights) is refused by the
gate and never answers an unversioned request. `make serve` brings back the version last rolled
out."""

from __future__ import annotations

import time

import pytest
import yaml

from scripts import gateway
from scripts.measure.traffic import Traffic, summary
from scripts.measure.variants import link_artifacts
from scripts.rollout import state
from scripts.rollout.drill import drill
from scripts.rollout.flow import RolloutRefused, build, restore, rollback, rollout
from scripts.pipeline.ensure import ensure_built
from scripts.runtimes.protocols import VIA_GATEWAY, StartOptions
from scripts.runtimes.registry import RUNTIMES, attached
from scripts.tasks import task_of
from scripts.spec import SpecError, load_spec
from tests.conftest import LAYOUT, REPO, scratch_checkout

MODEL = "digits_cnn"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """digits_cnn alone, with a broken version 3 whose untrained checkpoint lives in the scratch;
    versions 1 and 2 are built in the real checkout (as `make rollout` does) and linked."""
    scratch = tmp_path_factory.mktemp("rollout") / "checkout"
    scratch.mkdir()
    raw = yaml.safe_load((REPO / "models.yaml").read_text())
    entry = next(m for m in raw["models"] if m["name"] == MODEL)
    entry["versions"].append(
        {
            "version": 3,
            "description": "untrained: wrong answers",
            "source": {"checkpoint": "broken/model.pt"},
            "training": {"data": None},
        }
    )
    # these tests are about answers under load, not latency: no time decides them (on 2 shared
    # cores a freshly loaded version's p99 was once 35x the serving one's); the p99 comparison
    # itself is tested on given latencies in tests/unit/rollout/test_gate.py
    entry["rollout"] = {**entry.get("rollout", {}), "max_p99_factor": 1e9}
    (scratch / "models.yaml").write_text(yaml.safe_dump({"models": [entry]}, sort_keys=False))
    layout = scratch_checkout(scratch)
    spec = load_spec(scratch / "models.yaml").models[0]
    for version in (1, 2):
        versioned = spec.at_version(version)
        ensure_built([spec], LAYOUT, version=version, through="export")
        link_artifacts(versioned, versioned, LAYOUT, layout)
    return layout, spec


def start_both(spec, scratch, workdir):
    servers = {}
    try:
        for name, runtime in RUNTIMES.items():  # the first version, built as `make serve` does
            ensure_built([spec], scratch, [runtime])
            servers[name] = runtime.server.start(
                [spec],
                scratch,
                StartOptions(workdir=workdir / name, free_ports=True, timeout_s=240, managed=True),
            )
    except Exception:
        stop_all(servers)
        raise
    return servers


def stop_all(servers):
    for name, server in servers.items():
        RUNTIMES[name].server.stop(server.workdir)


@pytest.fixture(scope="module")
def servers(checkout, tmp_path_factory):
    scratch, spec = checkout
    running = start_both(spec, scratch, tmp_path_factory.mktemp("servers"))
    try:
        yield running
    finally:
        stop_all(running)


def defaults(servers, spec):
    return {
        name: RUNTIMES[name].versions.versions(server, spec).default
        for name, server in servers.items()
    }


def test_an_unknown_version_or_no_previous_version_is_refused_by_name(checkout, servers):
    scratch, spec = checkout
    with pytest.raises(SpecError, match="no version 7; versions in the spec: \\[1, 2, 3\\]"):
        rollout(spec, 7, "all", scratch, servers)
    with pytest.raises(Exception, match="no previous version to roll back to"):
        rollback(spec, "all", scratch, servers)


def test_a_broken_version_is_refused_by_the_gate_and_never_answers_unversioned_requests(
    checkout, servers
):
    scratch, spec = checkout
    for name in servers:  # built first: under load only the gate and the refusal are measured
        build(RUNTIMES[name], spec, 3, scratch)
    inputs, expected = task_of(spec).expected_outputs(spec, [1, 3], scratch)
    with Traffic(spec, task_of(spec).clients(servers, spec, 2), expected, inputs) as traffic:
        time.sleep(0.5)
        with pytest.raises(RolloutRefused) as refused:
            rollout(spec, 3, "all", scratch, servers)
        time.sleep(0.5)
    message = "\n".join(refused.value.problems)
    print(message)
    assert "torchserve: top-1 labels agree with the serving version on" in message, message
    assert "triton: top-1 labels agree with the serving version on" in message, message
    assert defaults(servers, spec) == {"torchserve": 1, "triton": 1}
    assert all(3 not in RUNTIMES[n].versions.versions(s, spec).loaded for n, s in servers.items())
    total = summary(traffic.answers)
    assert total["failed"] == 0 and total["by_version"] == {"1": total["requests"]}, total
    assert state.served(scratch, "torchserve", MODEL) == {}  # nothing recorded as served
    assert [
        line for line in state.log_file(scratch).read_text().splitlines() if '"refused"' in line
    ]


def test_rollout_and_rollback_under_load_fail_no_request(checkout, servers, tmp_path):
    """Clients on every endpoint, and through a gateway in front of both runtimes (as
    `make drill` does when the spec has access:)."""
    scratch, spec = checkout
    with gateway.fronting(attached(servers), [spec], scratch.root, tmp_path / "gw") as passage:
        report = drill(spec, 2, servers, scratch, per_endpoint=4, settle_s=1.5, passage=passage)
    answers = report["answers"]
    assert report["clients"] >= 16
    assert all(not a.error for a in answers), summary(answers)["errors"]
    assert {a.version for a in answers} == {1, 2}
    after_rollout, after_rollback = [report["marks"][i] for i in (2, 4)]
    assert {
        a.version
        for a in answers
        if a.asked is None and after_rollout <= a.started < report["marks"][3]
    } == {2}
    assert {a.version for a in answers if a.started >= after_rollback} == {1}
    assert {a.version for a in answers if a.asked == 1} == {1}  # naming version 1 always gets it
    for runtime in servers:  # both protocols of both runtimes, and the gateway, saw the switch
        kinds = {a.client for a in answers if a.runtime == runtime and a.version == 2}
        assert len(kinds) == 3 and any(VIA_GATEWAY in kind for kind in kinds), kinds
    assert defaults(servers, spec) == {"torchserve": 1, "triton": 1}
    assert set(report["switch_s"]) == {"torchserve", "triton"}


def test_serve_brings_back_the_version_last_rolled_out(checkout, servers, tmp_path):
    scratch, spec = checkout
    rollout(spec, 2, "all", scratch, servers)
    assert defaults(servers, spec) == {"torchserve": 2, "triton": 2}
    stop_all(servers)
    restarted = start_both(spec, scratch, tmp_path)
    try:
        lines = restore("all", [spec], scratch, restarted)
        assert len(lines) == 2 and all(
            "serves version 2, as last rolled out" in line for line in lines
        ), lines
        assert defaults(restarted, spec) == {"torchserve": 2, "triton": 2}
        rollback(spec, "all", scratch, restarted)
        assert defaults(restarted, spec) == {"torchserve": 1, "triton": 1}
    finally:
        stop_all(restarted)
