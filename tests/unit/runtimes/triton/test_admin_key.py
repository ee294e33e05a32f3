"""Where Triton's admin key can travel, pinned as the 2.51 binaries allow it today:
tritonserver takes the restricted-API key only inline in its arguments and perf_analyzer sends
headers only from -H on its command line (docs/operations.md, "The admin key on command lines").
These fail when a release offers a file or environment form, so that it is used instead. What we
control is checked too: a random key per start, only in the restricted-API arguments, a 0600 copy
for clients, every listener on loopback."""

from __future__ import annotations

import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from scripts.runtimes.triton import server as tr

KEY = "k3y-" + "x" * 28


def help_text(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def option_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("-")]


def test_tritonserver_reads_the_restricted_api_key_only_from_its_arguments():
    binary = tr.wheel_dir() / "bin" / "tritonserver"
    if not binary.exists():
        pytest.skip(f"{binary} not installed")
    options = option_lines(help_text([str(binary), "--help"], tr.env()))
    restricted = [o for o in options if "restricted" in o]
    assert restricted == [
        "--http-restricted-api <<string>:<string>=<string>>",
        "--grpc-restricted-protocol <<string>:<string>=<string>>",
    ]
    assert not [o for o in options if re.search(r"key-?file|secret|auth", o, re.I)]


def test_perf_analyzer_sends_headers_only_from_its_command_line():
    from scripts.measure.perf import environment, perf_analyzer

    text = help_text([str(perf_analyzer()), "--help"], environment(Path(tempfile.mkdtemp())))
    names = {re.match(r"-{1,2}[\w-]+", o).group(0) for o in option_lines(text)}
    assert "-H" in names and not [n for n in names if re.search(r"header|auth", n, re.I)]
    mentions = {re.match(r"-{1,2}[\w-]+", o).group(0) for o in option_lines(text) if "header" in o}
    assert mentions == {"-H"}


def test_the_key_is_only_in_the_restricted_api_arguments_and_every_listener_is_loopback():
    server = tr.Triton(Path("/run/x"), tr.Ports(), KEY)
    args = tr.command(server, Path("/repo"), ["a"])
    assert [a.split("=", 1)[0] for a in args if KEY in a] == [
        "--http-restricted-api",
        "--grpc-restricted-protocol",
    ]
    addresses = {a.split("=", 1)[1] for a in args if re.match(r"--\w+-address=", a)}
    assert addresses == {"127.0.0.1"} and len([a for a in args if "-address=" in a]) == 3


def test_the_clients_copy_of_the_key_is_owner_only(tmp_path):
    tr.write_secret(tmp_path / "admin_key", KEY)
    assert stat.S_IMODE((tmp_path / "admin_key").stat().st_mode) == 0o600
    assert tr.attach(tmp_path).admin_key == KEY


def test_each_start_gets_a_new_random_key(tmp_path, monkeypatch):
    started = []

    class Popen:
        def __init__(self, cmd, **kwargs):
            started.append(cmd)
            self.pid = 1 << 22  # never a live process: nothing is signalled

        def poll(self):
            return 0

    monkeypatch.setattr(tr.subprocess, "Popen", Popen)
    monkeypatch.setattr(tr, "_children", {})
    monkeypatch.setattr(tr, "assemble_backends", lambda folder: folder.mkdir())
    (tmp_path / "repo" / "a").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "config.pbtxt").write_text("")
    keys = [
        tr.start(tmp_path / "repo", None, tr.Ports(), tmp_path / f"run{n}").admin_key
        for n in range(2)
    ]
    assert keys[0] != keys[1] and all(len(k) >= 32 for k in keys)
    assert all(any(k in a for a in cmd) for k, cmd in zip(keys, started))
