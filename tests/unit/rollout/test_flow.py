"""The rollout flow's decisions, on runtime plugin stand-ins that record every call (the real
servers are driven in tests/integration/test_rollout.py): switch only after the gate passed on
every runtime, switch all back when the check after a switch fails on one, unload only what the
rollout loaded, retire only drained versions."""

from __future__ import annotations

import pytest

from scripts.pipeline.layout import Layout
import scripts.tasks.base as tasks_base
from scripts.rollout import flow, steps
from scripts.rollout.gate import Gate
from scripts.runtimes.protocols import Live, ServedVersions
from scripts.tasks.base import OnePass
from scripts.spec import load_spec
from scripts.spec.versions import VersionSpec
from tests.conftest import REPO

SPEC = load_spec(REPO / "models.yaml").select(["digits_cnn"])[0]
THREE = SPEC.model_copy(
    update={"versions": [*SPEC.versions, VersionSpec(version=3, training={"epochs": 4})]}
)


class Recorder:
    """A runtime stand-in: its version control and endpoints act on an imaginary server."""

    title = "Fake"

    def __init__(
        self, name="fake", loaded=(1,), default=1, gate=None, switch_takes_effect=True, busy=()
    ):
        self.name, self.loaded, self.default, self.calls = name, set(loaded), default, []
        self.gate, self.switch_takes_effect, self.busy = (
            gate or Gate(),
            switch_takes_effect,
            set(busy),
        )
        self.versions, self.endpoints = RecordedVersions(self), NamedEndpoints(name)


class RecordedVersions:
    """The VersionControl protocol, recording each call on its runtime stand-in."""

    def __init__(self, runtime: Recorder):
        self.runtime = runtime

    def rollout_problems(self, server, spec):
        return []

    def versions(self, server, spec):
        return ServedVersions(sorted(self.runtime.loaded), self.runtime.default)

    def load_beside(self, server, spec, version, layout):
        if version in self.runtime.loaded:
            return False
        self.runtime.calls.append(("load", version))
        self.runtime.loaded.add(version)
        return True

    def make_default(self, server, spec, version, keep, layout):
        runtime = self.runtime
        runtime.calls.append(("default", version))
        if runtime.switch_takes_effect or runtime.calls.count(("default", version)) > 1:
            runtime.default = version

    def unload(self, server, spec, version, layout):
        self.runtime.calls.append(("unload", version))
        self.runtime.loaded.discard(version)

    def requests_served(self, server, spec, version):
        return 0.0


class NamedEndpoints:
    def __init__(self, name: str):
        self.name = name

    def version_endpoints(self, server, spec, version):
        return {f"{self.name}-rest": lambda s, inputs: {}}

    def tensor_endpoints(self, server):
        return {f"{self.name}-rest": lambda s, inputs: {}}


@pytest.fixture
def layout(tmp_path):
    return Layout.of(tmp_path)


@pytest.fixture
def plugins(monkeypatch):
    """Stand-ins in place of the registered runtimes; each gates with its own Gate."""
    chosen: list[Recorder] = []
    # each stand-in is bound to itself as its server: its capabilities ignore the server
    monkeypatch.setattr(
        flow, "servers_of", lambda runtime, root, servers: [Live(p, p) for p in chosen]
    )
    monkeypatch.setattr(steps, "build", lambda plugin, spec, version, root: None)
    monkeypatch.setattr(
        steps, "drained", lambda live, spec, version: version not in live.runtime.busy
    )
    gates = {}
    monkeypatch.setattr(
        OnePass, "gate", staticmethod(lambda serving, candidate, *rest: gates[candidate]())
    )
    real_prepare = flow.prepare

    def prepare(live, spec, version, root):
        plugin = live.runtime
        gates[plugin] = lambda: plugin.gate
        monkeypatch.setattr(OnePass, "gate", staticmethod(lambda *args: plugin.gate))
        return real_prepare(live, spec, version, root)

    monkeypatch.setattr(flow, "prepare", prepare)

    def golden_check(
        endpoints, spec, root, gate
    ):  # unversioned requests reach each plugin's default
        plugin = next(p for p in chosen if f"{p.name}-rest" in endpoints)
        if plugin.default != spec.version:
            gate.problems.append(
                f"version {spec.version} golden samples via {plugin.name}-rest: "
                f"version {plugin.default}"
            )

    monkeypatch.setattr(tasks_base, "golden_check", golden_check)
    return chosen


def test_a_passing_gate_switches_and_keeps_the_previous_version(plugins, layout):
    plugins.append(Recorder(gate=Gate({"label_agreement": 1.0})))
    [outcome] = flow.rollout(THREE, 2, "all", layout)
    assert outcome.action == "rolled out" and (outcome.default, outcome.previous) == (2, 1)
    assert plugins[0].calls == [("load", 2), ("default", 2)] and plugins[0].loaded == {1, 2}
    assert flow.state.served(layout, "fake", "digits_cnn")["default"] == 2


def test_a_gate_refused_on_one_runtime_switches_none_and_unloads_only_what_it_loaded(
    plugins, layout
):
    plugins += [
        Recorder("first", loaded=(1, 2)),
        Recorder("second", gate=Gate({}, ["labels agree on 4.0%"])),
    ]
    with pytest.raises(flow.RolloutRefused) as refused:
        flow.rollout(THREE, 2, "all", layout)
    assert refused.value.problems[1:] == ["second: labels agree on 4.0%"]
    assert [p.default for p in plugins] == [1, 1]
    assert plugins[0].calls == [] and plugins[0].loaded == {1, 2}  # 2 was loaded before: kept
    assert plugins[1].calls == [("load", 2), ("unload", 2)]
    assert flow.state.read_state(layout) == {}


def test_a_failed_check_after_a_switch_switches_every_runtime_back(plugins, layout):
    plugins += [Recorder("first"), Recorder("second", switch_takes_effect=False)]
    with pytest.raises(flow.RolloutRefused) as refused:
        flow.rollout(THREE, 2, "all", layout)
    assert refused.value.problems[1:] == [
        "second: unversioned requests after the switch via second-rest: version 1",
        "second: switched back to version 1",
        "first: switched back to version 1",
    ]
    assert [p.default for p in plugins] == [1, 1] and all(2 not in p.loaded for p in plugins)
    assert flow.state.read_state(layout) == {}


def test_older_versions_are_retired_only_once_drained(plugins, layout):
    plugins.append(Recorder(loaded=(1, 2), default=2, busy={1}))
    [outcome] = flow.rollout(THREE, 3, "all", layout)
    assert ("unload", 1) not in plugins[0].calls and plugins[0].loaded == {1, 2, 3}
    assert outcome.problems == ["version 1 still answers requests that name it; left loaded"]
    plugins[0] = Recorder(loaded=(1, 2), default=2)
    [outcome] = flow.rollout(THREE, 3, "all", layout)
    assert ("unload", 1) in plugins[0].calls and plugins[0].loaded == {2, 3}
    assert outcome.problems == ["retired version 1"]


def test_rollback_needs_a_previous_version_on_every_runtime_before_switching_any(plugins, layout):
    plugins += [
        Recorder("first", loaded=(1, 2), default=2),
        Recorder("second", loaded=(1, 2), default=2),
    ]
    flow.state.record(layout, "first", "digits_cnn", 2, 1, None)
    with pytest.raises(flow.UserError, match="second.*no previous version|no previous version"):
        flow.rollback(THREE, "all", layout)
    assert [p.default for p in plugins] == [2, 2]
    flow.state.record(layout, "second", "digits_cnn", 2, 1, None)
    assert [o.action for o in flow.rollback(THREE, "all", layout)] == ["rolled back", "rolled back"]
    assert [p.default for p in plugins] == [1, 1]


def test_a_version_that_cannot_be_built_for_one_runtime_is_withdrawn_from_the_others(
    plugins, monkeypatch, layout
):
    def build(plugin, spec, version, root):
        if plugin.name == "second":
            raise flow.UserError(["its pre-processing assets differ"])

    monkeypatch.setattr(steps, "build", build)
    plugins += [Recorder("first"), Recorder("second")]
    with pytest.raises(flow.UserError, match="assets differ"):
        flow.rollout(THREE, 2, "all", layout)
    assert plugins[0].calls == [("load", 2), ("unload", 2)] and plugins[0].default == 1


def test_a_version_may_change_its_int8_gate_and_tolerance():
    from scripts.spec.versions import version_update

    entry = VersionSpec(version=2, quantize={"max_accuracy_drop": 2.0}, tolerance={"atol": 1e-3})
    second = SPEC.model_copy(update=version_update(SPEC, entry))
    assert second.quantize.max_accuracy_drop == 2.0 and second.tolerance.atol == 1e-3
    assert second.tolerance.rtol == SPEC.tolerance.rtol and SPEC.quantize.max_accuracy_drop == 1.0
