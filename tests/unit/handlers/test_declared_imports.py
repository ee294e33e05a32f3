"""Every third-party module the run-time code (handlers/) imports comes from a distribution
pinned in pyproject.toml, or from the server it runs in: a module that is only there because
something else pulled it in (jinja2 came with torch) can vanish on the next upgrade."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# Provided by the runtime the handler runs in, never installed from pyproject.
RUNTIME_PROVIDED = {"triton_python_backend_utils": "Triton's Python backend"}
LOCAL = {"handlers"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        normalized(re.split(r"[\s\[=<>!~;]", d, maxsplit=1)[0]) for d in project["dependencies"]
    }


def top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - LOCAL


def test_every_run_time_import_is_declared_or_provided_by_the_runtime():
    pinned, providers = declared(), packages_distributions()
    missing = []
    for path in sorted((REPO / "handlers").rglob("*.py")):  # formats/ too
        for module in sorted(top_level_imports(path)):
            if module in RUNTIME_PROVIDED:
                continue
            dists = {normalized(d) for d in providers.get(module, [])}
            if not dists & pinned:
                name = path.relative_to(REPO / "handlers")
                missing.append(f"{name}: {module} ({', '.join(sorted(dists)) or 'unknown'})")
    assert not missing, f"pin these in pyproject.toml's dependencies: {missing}"


def test_the_checker_sees_jinja2():
    assert "jinja2" in top_level_imports(REPO / "handlers" / "protocols" / "openai_chat.py")
    assert "jinja2" in declared()
