"""The gateway: nginx with its njs module, one TLS port in front of every running runtime. Each
client's key is checked by its SHA-256 (scripts/gateway/access.js), its scope decides which
models it may call, nginx's own limits hold its rate and its requests at once, and the
runtimes' keys are set on the way in, never handed out. `make serve` starts it after the
runtimes when the spec has `access:`; `make access-reload` rewrites its files and reloads it
(nginx finishes what is in flight on the old workers: no request is dropped); `make stop`
stops it.

Why nginx: Debian packages it with njs (`libnginx-mod-http-js`), which reads a JSON body's
`model` to route OpenAI's API, hashes keys, and answers refusals in each API's own shape;
reloads are graceful; its rate and connection limits are built in. HAProxy would need Lua for
the body, and Envoy is not packaged here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


from scripts.gateway.config import JS_MODULE, GatewayFiles, clients_js, nginx_conf
from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import free_port
from scripts.runtimes.protocols import GatewayPass, GatewayRoute, Live
from scripts.spec import BuildError, ModelSpec
from scripts.spec.access import AccessSpec

NAME = "gateway"  # its run state's folder
PROBE_CLIENT = "probe"  # the one client of a gateway `make bench` or `make verify` starts
JS_MODULE_PATHS = (
    Path("/usr/lib/nginx/modules/ngx_http_js_module.so"),
    Path("/usr/share/nginx/modules/ngx_http_js_module.so"),
)


@dataclass(frozen=True)
class Gateway:
    folder: Path
    url: str  # https://host:port

    @property
    def certificate(self) -> Path:
        return self.folder / "tls" / "cert.pem"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        raise BuildError(
            [
                "the gateway needs nginx with its njs module: `make install` installs "
                "nginx-light and libnginx-mod-http-js with apt-get"
            ]
        )
    return found


def js_module() -> Path:
    found = next((p for p in JS_MODULE_PATHS if p.exists()), None)
    if found is None:
        raise BuildError(["nginx's njs module is missing: apt-get install libnginx-mod-http-js"])
    return found


def ensure_keys(access: AccessSpec, root: Path) -> list[str]:
    """A client's key file that does not exist yet gets a random key (readable by its owner
    only); says where, so the key can be handed to the client."""
    made = []
    for client in access.clients:
        if client.key_file is None or (root / client.key_file).exists():
            continue
        path = root / client.key_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        made.append(f"client {client.name!r}: a new key in {path}")
    return made


def tls_pair(access: AccessSpec, root: Path, folder: Path) -> tuple[Path, Path]:
    """The user's certificate and key, or a self-signed pair for localhost made once."""
    if access.tls is not None:
        return root / access.tls.certificate, root / access.tls.key
    tls = folder / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    if not (cert.exists() and key.exists()):
        tls.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)
    return cert, key


def routes_of(lives: list[Live[Any]], specs: list[ModelSpec]) -> list[GatewayRoute]:
    return [route for live in lives for route in live.gateway_routes(specs)]


def openai_of(lives: list[Live[Any]], specs: list[ModelSpec]) -> dict[str, GatewayRoute]:
    """Each model's OpenAI route on the first runtime that answers it, at its served default
    version."""
    found: dict[str, GatewayRoute] = {}
    for live in lives:
        for spec in specs:
            if spec.name in found or live.openai_base(spec, spec.version) is None:
                continue  # asked first at the spec's version: no server call for the others
            route = live.openai_base(spec, live.versions(spec).default or spec.version)
            if route is not None:
                found[spec.name] = route
    return found


def write_files(
    access: AccessSpec, root: Path, folder: Path, lives: list[Live[Any]], specs: list[ModelSpec]
) -> Path:
    """nginx.conf, clients.js and access.js in the gateway's folder; its config's path."""
    (folder / "temp").mkdir(parents=True, exist_ok=True)
    cert, key = tls_pair(access, root, folder)
    files = GatewayFiles(folder, cert, key, js_module())
    openai = openai_of(lives, specs)
    secret_write(folder / "clients.js", clients_js(access, root, openai))
    shutil.copyfile(JS_MODULE, folder / "access.js")
    conf = folder / "nginx.conf"
    secret_write(conf, nginx_conf(access, files, routes_of(lives, specs), openai))
    return conf


def secret_write(path: Path, text: str) -> None:
    """Written readable by its owner only: it holds the runtimes' keys or the key hashes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def nginx(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-c", str(conf), "-p", str(conf.parent), *args],
        capture_output=True,
        text=True,
    )


def checked_files(
    access: AccessSpec, root: Path, folder: Path, lives: list[Live[Any]], specs: list[ModelSpec]
) -> Path:
    """The gateway's files written and checked by `nginx -t` (a running gateway keeps its
    old files' behaviour when the new ones do not load); its config's path."""
    conf = write_files(access, root, folder, lives, specs)
    checked = nginx(conf, "-t")
    if checked.returncode != 0:
        raise BuildError([f"the gateway's nginx.conf does not load: {checked.stderr.strip()}"])
    return conf


def start(
    access: AccessSpec,
    root: Path,
    folder: Path,
    lives: list[Live[Any]],
    specs: list[ModelSpec],
    timeout_s: float = 30,
) -> Gateway:
    """Write the gateway's files, check them with `nginx -t`, start nginx and wait until its
    port answers."""
    folder = folder.resolve()
    conf = checked_files(access, root, folder, lives, specs)
    started = nginx(conf)
    if started.returncode != 0:
        raise BuildError([f"the gateway did not start: {started.stderr.strip()}"])
    gateway = Gateway(folder, f"https://{access.host}:{access.port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((access.host, access.port), timeout=1).close()
            return gateway
        except OSError:
            time.sleep(0.05)
    stop(folder)
    raise BuildError([f"the gateway did not answer on {gateway.url}: see {folder}/error.log"])


def reload(
    access: AccessSpec,
    root: Path,
    folder: Path,
    lives: list[Live[Any]],
    specs: list[ModelSpec],
    timeout_s: float = 30,
) -> None:
    """New keys, scopes and routes without a restart: nginx's new workers take new requests
    while the old ones finish theirs."""
    conf = checked_files(access, root, folder.resolve(), lives, specs)
    pid = running(folder.resolve())
    before = accepting_workers(pid) if pid else set()
    done = nginx(conf, "-s", "reload")
    if done.returncode != 0:
        raise BuildError([f"the gateway did not reload: {done.stderr.strip()}"])
    # `-s reload` returns before the master has swapped its workers: until every old worker
    # has stopped accepting, a new connection may still meet the old keys
    deadline = time.monotonic() + timeout_s
    while pid and before & accepting_workers(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def accepting_workers(master: int) -> set[int]:
    """The master's workers that take new connections (one shutting down calls itself so in
    its process title)."""
    try:
        children = psutil.Process(master).children()
    except psutil.Error:
        return set()
    accepting: set[int] = set()
    for child in children:
        try:
            if "worker process" in (title := " ".join(child.cmdline())) and "shutting" not in title:
                accepting.add(child.pid)
        except psutil.Error:  # it has just exited
            continue
    return accepting


def running(folder: Path) -> int | None:
    """The master's pid, if this folder's gateway runs."""
    pid_file = folder / "nginx.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop(folder: Path, timeout_s: float = 10) -> bool:
    """Stop the gateway of this folder (graceful: in-flight requests finish); True if one ran."""
    pid = running(folder)
    if pid is None:
        return False
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running(folder) is not None:
        time.sleep(0.05)
    if running(folder) is not None:
        os.kill(pid, signal.SIGTERM)
    return True


def follow_versions(access: AccessSpec | None, layout: Layout, specs: list[ModelSpec]) -> list[str]:
    """After a rollout or rollback: the running gateway reloaded, so OpenAI's routes (by the
    body's model) go to the new default version; nothing when no gateway runs."""
    if access is None or running(state(layout)) is None:
        return []
    reload(access, layout.root, state(layout), running_lives(layout), specs)
    return ["gateway reloaded: OpenAI routes follow the default versions"]


def probe_access(key: str) -> AccessSpec:
    """One client with `key`: every model and the admin APIs (perf_analyzer reads Triton's
    statistics), no limits: what the gateway's path costs and answers, not what a policy
    refuses."""
    client = {
        "name": PROBE_CLIENT,
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "admin": True,
    }
    return AccessSpec.model_validate({"port": free_port(), "clients": [client]})


@contextlib.contextmanager
def fronting(
    lives: list[Live[Any]], specs: list[ModelSpec], root: Path, folder: Path
) -> Generator[GatewayPass]:
    """A gateway of its own on a free port in front of `lives` for `make bench` and
    `make verify` (never the one `make serve` runs): its probe client's way through. Raises
    BuildError where nginx cannot start."""
    key = secrets.token_urlsafe(24)
    started = start(probe_access(key), root, folder, lives, specs)
    try:
        yield GatewayPass(started.url, key, started.certificate)
    finally:
        stop(folder)


def state(layout: Layout) -> Path:
    return layout.state(NAME)


def running_lives(layout: Layout) -> list[Live[Any]]:
    """Every runtime `make serve` runs now, bound to its server."""
    from scripts.runtimes.registry import RUNTIMES

    found = [(r, r.server.running(layout)) for r in RUNTIMES.values()]
    return [r.attach(server) for r, server in found if server is not None]


def serve_gateway(access: AccessSpec, layout: Layout, specs: list[ModelSpec]) -> list[str]:
    """Start the gateway in front of the running runtimes (reload it if it runs) and say
    where it is and whom it lets in."""
    lives = running_lives(layout)
    if not lives:
        raise BuildError(["no runtime runs: `make serve` starts them and then the gateway"])
    lines = ensure_keys(access, layout.root)
    folder = state(layout)
    if running(folder) is not None:
        reload(access, layout.root, folder, lives, specs)
        lines.append("gateway reloaded")
    else:
        start(access, layout.root, folder, lives, specs)
        lines.append(f"gateway READY: https://{access.host}:{access.port}")
    names = ", ".join(live.title for live in lives)
    shown = layout.shown(folder)
    return lines + [
        f"  in front of {names}; the runtimes' ports stay on 127.0.0.1 (gRPC: loopback only)",
        f"  clients: {', '.join(c.name for c in access.clients)}; "
        "send 'Authorization: Bearer <key>'",
        f"  certificate {shown}/tls/cert.pem (self-signed unless access.tls gives yours)"
        if access.tls is None
        else f"  certificate {access.tls.certificate}",
        f"  access log {shown}/access.log (JSON lines, with the client's name)",
    ]
