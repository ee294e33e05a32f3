"""The docs name only what exists: every project path in README.md and docs/*.md is in the
checkout, every `make <target>` is a Makefile target, every relative link resolves (anchors
included), and the README stays a front door of at most 200 lines."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

README = REPO / "README.md"
DOCS = sorted([README, *(REPO / "docs").glob("*.md")])
MAX_README_LINES = 200

# A token naming a project path starts with one of these, or is one of the top-level files.
PROJECT_PREFIXES = ("scripts/", "handlers/", "models/", "tests/", "docs/", ".ci/")
TOP_LEVEL_FILES = {"Makefile", "models.yaml", "config.properties", "pyproject.toml", "README.md"}
# Generated (git-ignored) folders: named in the docs, absent from a fresh checkout.
GENERATED = (
    "checkpoints/",
    "artifacts/",
    "model_store/",
    "triton_repo/",
    "reports/",
    "kserve/",
    ".torchship/",
)
# A path is checked only up to the folder before its first placeholder.
PLACEHOLDER = re.compile(r"[<*{\[]|\.\.\.|…")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
MAKE = re.compile(
    r"(?:^|[\s;&|(`$])make((?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*|\s+-\S+)*)"
    r"\s+([A-Za-z][\w.-]*)\b(?!=)"
)
MAKE_RULE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)", re.M)


def split_code(text: str) -> tuple[str, list[str], list[str]]:
    """Prose with code removed, the fenced blocks, and the inline code spans of the prose."""
    fenced = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    inline = [m.group(2) for m in INLINE_CODE.finditer(prose)]
    return INLINE_CODE.sub("", prose), fenced, inline


def project_path(token: str) -> str | None:
    """The part of a token to check in the checkout, or None when it names no project path."""
    token = token.strip("\"'(),;:").rstrip(".")
    token = re.sub(r"^[A-Za-z_][A-Za-z0-9_]*=", "", token)  # SPEC=models/zoo.yaml
    token = token.removeprefix("./")
    if token.startswith(GENERATED):
        return None
    if token in TOP_LEVEL_FILES:
        return token
    if not token.startswith(PROJECT_PREFIXES):
        return None
    placeholder = PLACEHOLDER.search(token)
    if placeholder:
        token = token[: token.rfind("/", 0, placeholder.start()) + 1]
    return token or None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = found.get(base, 0)
        found[base] = count + 1
        if count:
            found[f"{base}-{count}"] = 1
    return set(found)


def makefile_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    targets = set(MAKE_RULE.findall(makefile))
    for line in re.findall(r"^\.PHONY\s*:(.*)$", makefile, re.M):
        targets.update(line.split())
    return targets


def named(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def test_readme_is_a_front_door():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES})"


def test_every_named_project_path_exists():
    missing = set()
    for doc in DOCS:
        prose, _, inline = split_code(doc.read_text())
        tokens = [t for span in inline for t in span.split()]
        for target in LINK.findall(prose):
            if "://" not in target and not target.startswith(("#", "mailto:")):
                resolved = (doc.parent / target.split("#")[0]).resolve()
                if resolved.is_relative_to(REPO):
                    tokens.append(str(resolved.relative_to(REPO)))
        for token in tokens:
            path = project_path(token)
            if path and not (REPO / path).exists():
                missing.add(f"{named(doc)}: {path}")
    assert not missing, "paths named in the docs but missing:\n  " + "\n  ".join(sorted(missing))


def test_every_make_target_is_defined():
    targets = makefile_targets()
    unknown = set()
    for doc in DOCS:
        _, fenced, inline = split_code(doc.read_text())
        for code in [*fenced, *inline]:
            for _, target in MAKE.findall(code):
                if target not in targets:
                    unknown.add(f"{named(doc)}: make {target}")
    assert not unknown, "make targets not in the Makefile:\n  " + "\n  ".join(sorted(unknown))


def test_every_relative_link_resolves():
    broken = []
    for doc in DOCS:
        prose, _, _ = split_code(doc.read_text())
        for target in LINK.findall(prose):
            if "://" in target or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{named(doc)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{named(doc)}: {target} (no such heading)")
    assert not broken, "links that do not resolve:\n  " + "\n  ".join(broken)


def test_the_checker_sees_paths_and_targets():
    """The parsing itself: placeholders cut a path, generated folders and prose are skipped."""
    assert project_path("scripts/runtimes/<runtime>/") == "scripts/runtimes/"
    assert project_path("tests/unit/{spec,pipeline}") == "tests/unit/"
    assert project_path("SPEC=models/zoo.yaml") == "models/zoo.yaml"
    assert project_path("checkpoints/digits_cnn/requests/digit_7.png") is None
    assert project_path(".torchship/torchserve/key_file.json") is None
    assert project_path("models.tabular:TabularMLP") is None
    assert project_path("Makefile") == "Makefile"
    found = [t for _, t in MAKE.findall("make serve SPEC=x.yaml && make OUT=/o verify-artifacts")]
    assert found == ["serve", "verify-artifacts"]
    assert not MAKE.findall("the tests make-up") and not MAKE.findall("it makes a key")
    assert (
        slug("Performance: `make bench` and `make tune`") == "performance-make-bench-and-make-tune"
    )


REGISTRY = re.compile(r"`([A-Z][A-Z_]+)`(?: and `\w+`)? in `([\w/.]+\.py)`")
WHERE_TO_ADD = ("a runtime", "a task kind", "an export format", "a protocol", "a sampling option")


def test_the_architecture_names_the_registry_for_each_thing_to_add():
    """docs/architecture.md's "where to add" table: a row for each extension point, and each
    registry it names is defined at the top level of the file it names."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = text[text.index("## Registries: where to add something") :].split("\n\n")[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(WHERE_TO_ADD) <= set(rows), sorted(rows)
    for thing in WHERE_TO_ADD:
        named = REGISTRY.findall(rows[thing].split("|")[3])
        assert named, f"{thing}: no registry named"
        for name, path in named:
            source = (REPO / path).read_text()
            assert re.search(rf"^{name}\b[^=\n]*=", source, re.M), f"{name} is not in {path}"
