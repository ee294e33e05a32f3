"""The gateway's files from the spec's `access:` and the runtimes' routes: nginx.conf (routes,
per-client rate and concurrency limits, TLS, the JSON access log, the runtimes' keys set on the
way in) and clients.js (each client by its key's SHA-256, its scope; the OpenAI models and
where each goes). Pure functions: nothing here starts or reads a server."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from handlers.metrics import CLIENT_HEADER
from scripts.runtimes.protocols import GatewayRoute
from scripts.spec.access import AccessSpec, Client

JS_MODULE = Path(__file__).with_name("access.js")
# a request body njs reads must be in memory: the largest a client may send
MAX_BODY = "16m"
# a refused route's status inside nginx, on to its error page (which answers 401 or 403)
REFUSED = 418
KEEPALIVE = 64  # idle connections kept open to each runtime
LOG_FORMAT = (
    '{"time":"$time_iso8601","client":"$client","method":"$request_method","uri":"$uri",'
    '"status":$status,"seconds":$request_time,"upstream_seconds":"$upstream_response_time",'
    '"bytes_sent":$body_bytes_sent,"remote":"$remote_addr"}'
)


@dataclass(frozen=True)
class GatewayFiles:
    folder: Path  # the gateway's run state: nginx.conf, clients.js, logs, pid
    certificate: Path
    private_key: Path
    http_js_module: Path  # nginx's ngx_http_js_module.so


def key_hash(client: Client, root: Path) -> str:
    """The SHA-256 of the client's key, from the spec or from its key file."""
    if client.key_sha256 is not None:
        return client.key_sha256
    assert client.key_file is not None
    key = (root / client.key_file).read_text().strip()
    return hashlib.sha256(key.encode()).hexdigest()


def retry_after(client: Client) -> int:
    """Seconds until one more request is let through at the client's rate."""
    return max(1, math.ceil(1 / client.rate)) if client.rate else 1


def clients_js(access: AccessSpec, root: Path, openai: dict[str, GatewayRoute]) -> str:
    """The policy njs reads: clients by key hash (never a key), their scopes, and each OpenAI
    model's named location and path."""
    policy = {
        "clients": {
            key_hash(c, root): {"name": c.name, "models": c.models, "admin": c.admin}
            for c in access.clients
        },
        "openai": {
            model: {"location": f"@openai_{i}", "path": path_of(route.upstream)}
            for i, (model, route) in enumerate(sorted(openai.items()))
        },
        "retryAfter": {c.name: retry_after(c) for c in access.clients},
        "maxBody": MAX_BODY,
    }
    return "export default " + json.dumps(policy, indent=1) + ";\n"


def path_of(url: str) -> str:
    """http://127.0.0.1:8080/predictions/m/1 -> /predictions/m/1"""
    return "/" + url.split("://", 1)[1].split("/", 1)[1] if url.count("/") > 2 else ""


def origin_of(url: str) -> str:
    """http://127.0.0.1:8080/predictions/m/1 -> http://127.0.0.1:8080"""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def upstream_name(url: str) -> str:
    """The upstream group of a runtime's origin: its connections are kept open and reused
    (a connection per request cost the gateway half its throughput at 64 clients)."""
    return "runtime_" + re.sub(r"[^0-9A-Za-z]", "_", origin_of(url).split("://", 1)[1])


def upstreams(routes: list[GatewayRoute]) -> list[str]:
    lines: list[str] = []
    for name, origin in sorted(
        {upstream_name(r.upstream): origin_of(r.upstream) for r in routes}.items()
    ):
        address = origin.split("://", 1)[1]
        lines += block(f"upstream {name}", [f"server {address};", f"keepalive {KEEPALIVE};"], "")
    return lines


def limit_zones(access: AccessSpec) -> list[str]:
    """A zone per limited client, keyed by its name only for its own requests (an empty key is
    not counted), so each client has its own rate and its own count of requests at once."""
    lines: list[str] = []
    for i, c in enumerate(access.clients):
        if c.rate is None and c.streams is None:
            continue
        lines.append(f'map $client $limited_{i} {{ "{c.name}" "{c.name}"; default ""; }}')
        if c.rate is not None:
            per_minute = max(1, round(c.rate * 60))  # nginx takes whole requests per minute
            lines.append(f"limit_req_zone $limited_{i} zone=rate_{i}:1m rate={per_minute}r/m;")
        if c.streams is not None:
            lines.append(f"limit_conn_zone $limited_{i} zone=streams_{i}:1m;")
    return lines


def limits(access: AccessSpec) -> list[str]:
    """Every client's limits, applied in each public location (never again in the named
    location a request goes on to)."""
    lines: list[str] = []
    for i, c in enumerate(access.clients):
        if c.rate is not None:
            lines.append(f"limit_req zone=rate_{i} burst={c.burst} nodelay;")
        if c.streams is not None:
            lines.append(f"limit_conn streams_{i} {c.streams};")
    return lines


def proxied(upstream: str, headers: dict[str, str], uri: str = "") -> list[str]:
    """A named location's body: on to the runtime's upstream group, streaming, with the
    runtime's own keys and the client's name; the client's key never goes on."""
    lines = [
        f"proxy_pass http://{upstream_name(upstream)}{uri};",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_buffering off;",  # token streams go out as they come
        "proxy_request_buffering on;",
        "proxy_read_timeout 3600s;",
        f"proxy_set_header {CLIENT_HEADER} $client;",
    ]
    if "Authorization" not in headers:
        lines.append('proxy_set_header Authorization "";')
    lines += [f'proxy_set_header {name} "{value}";' for name, value in headers.items()]
    return lines


def block(head: str, body: list[str], indent: str = "    ") -> list[str]:
    return [f"{indent}{head} {{", *[f"{indent}    {line}" for line in body], f"{indent}}}"]


def server_locations(
    access: AccessSpec, routes: list[GatewayRoute], openai: dict[str, GatewayRoute]
) -> list[str]:
    limited = limits(access)
    lines: list[str] = []
    for route in routes:
        public = [
            *(limited if route.scope != "open" else []),
            f"set $scope {route.scope};",
            f"set $errors {route.errors};",
            f"if ($refused) {{ return {REFUSED}; }}",  # the one safe use of if: return
            *proxied(route.upstream, route.headers),
        ]
        lines += block(f'location ~ "{route.pattern}"', public)
    openai_public = [*limited, "set $errors openai;"]
    lines += block("location = /v1/models", [*openai_public, "js_content access.models;"])
    lines += block(
        'location ~ "^/v1/(completions|chat/completions)$"',
        [*openai_public, "js_content access.openai;"],
    )
    for i, (_, route) in enumerate(sorted(openai.items())):
        lines += block(
            f"location @openai_{i}", proxied(route.upstream, route.headers, "$openai_path")
        )
    lines += block("location @refused", ["js_content access.refusal;"])
    lines += block("location @too_many", ["js_content access.tooMany;"])
    lines += block("location @too_large", ["js_content access.tooLarge;"])
    lines += block("location @plain_http", ["js_content access.plainHttp;"])
    lines += block("location /", ["js_content access.notFound;"])
    return lines


def errors_by_uri(routes: list[GatewayRoute]) -> list[str]:
    """The error shape of a path before any location matched it (a body over the size limit is
    refused while nginx looks for the location): each route's own, by the same pattern."""
    entries = [
        f'"~{re.sub(r"[(][?]<[a-z]+>", "(?:", route.pattern)}" {route.errors};' for route in routes
    ]
    return block(
        "map $uri $errors_by_uri", [*entries, '"~^/v1/" openai;', "default kserve_v2;"], ""
    )


def nginx_conf(
    access: AccessSpec,
    files: GatewayFiles,
    routes: list[GatewayRoute],
    openai: dict[str, GatewayRoute],
) -> str:
    state = files.folder.resolve()
    server = [
        f"listen {access.host}:{access.port} ssl;",
        f"ssl_certificate {files.certificate.resolve()};",
        f"ssl_certificate_key {files.private_key.resolve()};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        f"client_max_body_size {MAX_BODY};",
        f"client_body_buffer_size {MAX_BODY};",  # njs reads the body from memory
        "limit_req_status 429;",
        "limit_conn_status 429;",
        "error_page 429 = @too_many;",
        "error_page 413 = @too_large;",
        "error_page 497 = @plain_http;",  # plain HTTP on the TLS port
        f"error_page {REFUSED} = @refused;",
        "js_var $openai_path;",
        "set $errors $errors_by_uri;",
        *server_locations(access, routes, openai),
    ]
    http = [
        f"js_path {state};",  # access.js (copied) and clients.js
        "js_import access from access.js;",
        "js_set $client access.client;",
        "js_set $refused access.refused;",
        f"log_format access escape=json '{LOG_FORMAT}';",
        # written in blocks (a line at most a second late), not one write per request
        f"access_log {state}/access.log access buffer=64k flush=1s;",
        f"client_body_temp_path {state}/temp/body;",
        f"proxy_temp_path {state}/temp/proxy;",
        "server_tokens off;",
        *limit_zones(access),
        *errors_by_uri(routes),
        *upstreams([*routes, *openai.values()]),
        *block("server", server, ""),
    ]
    lines = [
        f"load_module {files.http_js_module};",
        f"pid {state}/nginx.pid;",
        f"error_log {state}/error.log warn;",
        "worker_processes auto;",
        "events { worker_connections 4096; }",
        *block("http", http, ""),
    ]
    return "\n".join(lines) + "\n"
