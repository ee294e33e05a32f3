"""The spec's access: section and the gateway's files, without a server: each mistake named,
keys never written in the clear, each client limited in its own zone, the runtimes' keys set
on the way in and the client's cleared."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from scripts.gateway import ensure_keys
from scripts.gateway.config import GatewayFiles, clients_js, limit_zones, nginx_conf, retry_after
from scripts.runtimes.protocols import GatewayRoute
from scripts.spec.access import AccessSpec

DIGITS_KEY = "digits-secret-key"


def access(**extra) -> AccessSpec:
    return AccessSpec.model_validate(
        {
            "clients": [
                {
                    "name": "digits_app",
                    "key_sha256": hashlib.sha256(DIGITS_KEY.encode()).hexdigest(),
                    "models": ["digits_*"],
                    "rate": 0.5,
                    "burst": 2,
                },
                {"name": "writer", "key_file": "keys/writer.key", "streams": 4},
            ],
            **extra,
        }
    )


@pytest.mark.parametrize(
    "client, message",
    [
        ({"name": "a"}, "give exactly one of key_sha256"),
        ({"name": "a", "key_sha256": "ab" * 32, "key_file": "k"}, "give exactly one of"),
        ({"name": "a", "key_sha256": "not-hex"}, "String should match pattern"),
        ({"name": "a", "key_sha256": "ab" * 32, "models": ["digits cnn"]}, "give model names"),
        ({"name": "a b", "key_sha256": "ab" * 32}, "String should match pattern"),
        ({"name": "a", "key_sha256": "ab" * 32, "rate": 0}, "greater than 0"),
        ({"name": "a", "key_sha256": "ab" * 32, "plaintext_key": "x"}, "Extra inputs"),
    ],
)
def test_each_client_mistake_is_named(client, message):
    with pytest.raises(ValidationError, match=message):
        AccessSpec.model_validate({"clients": [client]})


def test_two_clients_of_one_name_are_refused():
    twice = {"name": "a", "key_sha256": "ab" * 32}
    with pytest.raises(ValidationError, match=r"clients \['a'\] are named more than once"):
        AccessSpec.model_validate({"clients": [twice, twice]})


def test_a_missing_key_file_gets_a_random_key_readable_by_its_owner_only(tmp_path):
    made = ensure_keys(access(), tmp_path)
    key_file = tmp_path / "keys" / "writer.key"
    assert made == [f"client 'writer': a new key in {key_file}"]
    assert len(key_file.read_text().strip()) >= 40 and key_file.stat().st_mode & 0o777 == 0o600
    assert ensure_keys(access(), tmp_path) == []  # an existing key is never replaced


def test_the_policy_holds_key_hashes_and_scopes_never_a_key(tmp_path):
    ensure_keys(access(), tmp_path)
    writer_key = (tmp_path / "keys" / "writer.key").read_text().strip()
    openai = {"review_gpt": GatewayRoute("review_gpt", "http://127.0.0.1:8080/predictions/r/1")}
    text = clients_js(access(), tmp_path, openai)
    policy = json.loads(text.removeprefix("export default ").removesuffix(";\n"))
    assert DIGITS_KEY not in text and writer_key not in text
    assert policy["clients"][hashlib.sha256(writer_key.encode()).hexdigest()]["name"] == "writer"
    assert policy["openai"] == {"review_gpt": {"location": "@openai_0", "path": "/predictions/r/1"}}
    assert policy["retryAfter"] == {"digits_app": 2, "writer": 1}


def test_each_limited_client_counts_in_its_own_zone():
    zones = limit_zones(access())
    assert 'map $client $limited_0 { "digits_app" "digits_app"; default ""; }' in zones
    assert "limit_req_zone $limited_0 zone=rate_0:1m rate=30r/m;" in zones  # 0.5/s
    assert "limit_conn_zone $limited_1 zone=streams_1:1m;" in zones
    assert not any("rate_1" in z for z in zones)  # writer has no rate
    assert retry_after(access().clients[0]) == 2


def test_the_runtimes_keys_go_on_and_the_clients_key_does_not(tmp_path):
    files = GatewayFiles(tmp_path, tmp_path / "c.pem", tmp_path / "k.pem", Path("/js.so"))
    routes = [
        GatewayRoute("^/ping$", "http://127.0.0.1:1", "open", errors="torchserve"),
        GatewayRoute(
            "^/predictions/(?<model>[^/]+)",
            "http://127.0.0.1:2",
            headers={"Authorization": "Bearer TS"},
        ),
        GatewayRoute("^/v2/models/(?<model>[^/]+)", "http://127.0.0.1:3"),
    ]
    conf = nginx_conf(access(port=9443), files, routes, {})
    assert "listen 127.0.0.1:9443 ssl;" in conf

    def location(pattern: str) -> str:
        return conf[conf.index(f'location ~ "{pattern}') :].split("\n            }", 1)[0]

    predictions, models = location("^/predictions/"), location("^/v2/models/")
    assert 'proxy_set_header Authorization "Bearer TS";' in predictions
    assert 'proxy_set_header Authorization "";' in models  # the client's key stops here
    assert "proxy_set_header X-Torchship-Client $client;" in models
    assert "if ($refused) { return 418; }" in models  # 401/403 from its error page
    # each connection to a runtime kept open and reused
    assert (
        "upstream runtime_127_0_0_1_3 {" in conf
        and "proxy_pass http://runtime_127_0_0_1_3;" in models
    )
    # every client's limits on a route, none on open ones (health)
    assert "limit_req zone=rate_0 burst=2 nodelay;" in models
    assert "limit_req" not in location("^/ping$") and "if ($refused)" in location("^/ping$")
    # routes are matched in the runtimes' order: the most specific first
    assert conf.index('"^/ping$"') < conf.index('"^/predictions/') < conf.index('"^/v2/models/')


def test_a_rollout_reloads_the_running_gateway_only(tmp_path, monkeypatch):
    """After a rollout the running gateway is reloaded with the running runtimes (OpenAI's
    routes follow the new default); with no gateway running, or no access:, nothing happens."""
    import scripts.gateway as gw
    from scripts.pipeline.layout import Layout

    layout = Layout.of(tmp_path)
    reloaded = []
    monkeypatch.setattr(gw, "reload", lambda *args: reloaded.append(args))
    monkeypatch.setattr(gw, "running_lives", lambda found_in: ["live"])
    monkeypatch.setattr(gw, "running", lambda folder: None)
    assert gw.follow_versions(access(), layout, []) == []
    monkeypatch.setattr(gw, "running", lambda folder: 1234)
    assert gw.follow_versions(None, layout, []) == []
    assert reloaded == []
    assert gw.follow_versions(access(), layout, []) != []
    ((policy, root, folder, lives, specs),) = reloaded
    assert folder == gw.state(layout) and lives == ["live"] and root == layout.root
