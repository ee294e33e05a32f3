"""The shape of the code, held by tests: no import cycles, run-time code never imports build
code, and no kind or runtime switches outside their classes. Files are sized by cohesion, not
by a line count."""

from __future__ import annotations

import ast
import re
from pathlib import Path


from tests.conftest import REPO

PACKAGES = ("scripts", "handlers")
SOURCES = sorted(
    p
    for package in PACKAGES
    for p in (REPO / package).rglob("*.py")
    if "stock_files" not in p.parts
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCES}


def imports(path: Path) -> set[str]:
    """Project modules imported anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = {name: imports(path) - {name} for name, path in MODULES.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_run_time_code_never_imports_build_code():
    offenders = {
        name: sorted(i for i in imports(path) if i.startswith("scripts"))
        for name, path in MODULES.items()
        if name.startswith("handlers")
    }
    assert not {k: v for k, v in offenders.items() if v}


TASK_KINDS = "classification|regression|embedding|raw|generation"
TASK_SWITCH = re.compile(
    rf"""kind\s*(==|!=|in)\s*\(?["']({TASK_KINDS})["']|\.generation\s+is\s+(not\s+)?None"""
)
TASK_REGISTRIES = ("handlers/tasks.py", "scripts/tasks/")


def test_task_kinds_are_not_switched_outside_their_registries():
    """What differs between task kinds is a method or an attribute of the kind's class
    (handlers/tasks.py serving, scripts/tasks/<kind>.py building): a new kind is a module and a
    registry line, not a branch in every file that a kind passes through."""
    found = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in SOURCES
        if not str(p.relative_to(REPO)).startswith(TASK_REGISTRIES)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if TASK_SWITCH.search(line)
    ]
    assert found == []


def test_every_task_kind_has_both_sides():
    from handlers.tasks import SERVING_TASKS
    from scripts.tasks import TASKS

    assert set(TASKS) == set(SERVING_TASKS)
    modules = {p.stem for p in (REPO / "scripts" / "tasks").glob("*.py")} - {"__init__", "base"}
    assert modules == set(TASKS)  # one module per kind


def test_kinds_and_runtimes_are_not_switched_by_name_outside_their_classes():
    """`if kind == "image"` or `if runtime == "triton"` belongs in a class, not in a branch."""
    switch = re.compile(
        r"""(kind|runtime|preprocess_kind)\s*(==|!=|in)\s*\(?["'](none|standardize|image|text|torchserve|triton)["']"""
    )
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for p in SOURCES
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if switch.search(line)
    ]
    assert found == []


def test_every_test_file_is_collected():
    """pytest skips folders it takes for output (`build`, `dist`, dot-folders, ...): a test file
    under such a folder would silently never run. Ask pytest itself what it collects."""
    import subprocess
    import sys

    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "tests"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected = {line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line}
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")}
    assert on_disk - collected == set(), listed.stdout[-2000:] + listed.stderr[-2000:]


def test_each_runtime_protocol_has_at_most_six_methods():
    from typing import Protocol

    from scripts.runtimes import protocols

    classes = [
        c
        for c in vars(protocols).values()
        if isinstance(c, type) and Protocol in c.__mro__[1:] and c.__module__ == protocols.__name__
    ]
    sizes = {
        c.__name__: len([n for n, v in vars(c).items() if callable(v) and not n.startswith("_")])
        for c in classes
    }
    assert len(sizes) >= 6 and all(n <= 6 for n in sizes.values()), sizes


# a generated folder as a path; `"model_store": ...` is TorchServe's own config key
GENERATED_LITERAL = re.compile(
    r"""["'](build/|artifacts|model_store|triton_repo|reports)(/|["'](?!:))"""
)
RUNTIME_LITERAL = re.compile(r"""["'](torchserve|triton)["']""")


def test_generated_folders_are_named_only_by_the_layout():
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for p in SOURCES
        if p.name != "layout.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if GENERATED_LITERAL.search(line)
    ]
    assert found == []


def test_runtimes_are_named_only_by_the_registry_and_their_own_folders():
    """Everything else loops over scripts/runtimes/registry.py's runtimes or asks a capability
    (the benchmark's setups and bars come from each runtime's BenchSetup). perf.py speaks
    perf_analyzer's --service-kind, whose values happen to be the runtimes' names."""
    own = ("scripts/runtimes/", "scripts/measure/perf.py")
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for p in SOURCES
        if not str(p.relative_to(REPO)).startswith(own)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if RUNTIME_LITERAL.search(line)
    ]
    assert found == []
