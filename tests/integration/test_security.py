"""Security as tests: allowed_urls holds even with the model API on, and both servers listen on
loopback only. (Tokens: test_torchserve.py; Triton's restricted repository API: test_triton.py;
tampered archives: tests/unit/test_archive.py.)"""

from __future__ import annotations

import ipaddress
import shutil
import time

import psutil
import pytest

from scripts.runtimes.processes import free_port
from scripts.runtimes.torchserve import server as torchserve_server
from scripts.runtimes.torchserve.client import TorchServeClient, TorchServeError
from scripts.runtimes.triton import server as triton_server
from tests.conftest import LAYOUT


def listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections("inet")
        if c.status == "LISTEN"
    }


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_torchserve_and_triton_listen_on_loopback_only(torchserve, triton):
    for pid, ports in (
        (torchserve_server.pid(torchserve), set(vars(torchserve.ports).values())),
        (triton_server.pid(triton), set(vars(triton.ports).values())),
    ):
        sockets = listening(pid)
        assert {port for _, port in sockets} == ports
        assert all(is_loopback(ip) for ip, _ in sockets), sockets


def test_registering_from_outside_allowed_urls_is_refused(tmp_path):
    """Even with the model API switched on, only archives directly in the model store register:
    not one elsewhere, not a URL, not a '..' path out of the store, not another folder named
    model_store."""
    store, elsewhere = tmp_path / "model_store", tmp_path / "elsewhere"
    store.mkdir(), elsewhere.mkdir()
    shutil.copy(LAYOUT.model_store / "tabular_mlp.mar", store)
    shutil.copy(LAYOUT.model_store / "tabular_mlp.mar", elsewhere / "copy.mar")
    ports = torchserve_server.Ports(*(free_port() for _ in range(5)))
    server = torchserve_server.start(
        LAYOUT.torchserve_config,
        store,
        ["tabular_mlp"],
        ports,
        tmp_path / "ts",
        overrides={"enable_model_api": "true"},
    )
    try:
        torchserve_server.wait_ready(server, ["tabular_mlp"], timeout_s=240)
        client = TorchServeClient.for_server(server)
        for url in (
            f"file://{elsewhere}/copy.mar",
            "https://example.invalid/model.mar",
            f"file://{store}/../elsewhere/copy.mar",
            f"file://{tmp_path}/x/model_store/copy.mar",
            "../elsewhere/copy.mar",
        ):
            with pytest.raises(TorchServeError) as refused:
                client.register(url)
            assert (
                refused.value.status in (400, 403, 404)
                and "allowed" in refused.value.message.lower()
            ), refused.value
        assert [m["modelName"] for m in client.list_models()] == ["tabular_mlp"]
        shutil.copy(
            LAYOUT.model_store / "digits_cnn.mar", store
        )  # one in the store itself registers
        client.register(
            "digits_cnn.mar", initial_workers=0
        )  # TorchServe's form for the store's own files
        assert sorted(m["modelName"] for m in client.list_models()) == ["digits_cnn", "tabular_mlp"]
    finally:
        torchserve_server.stop(server.workdir)


def test_workers_never_see_secrets_and_the_workflow_api_registers_nothing(tmp_path, monkeypatch):
    """blacklist_env_vars keeps secret-named variables of the server's environment out of the
    workers; the workflow API (not covered by enable_model_api=false in 0.12) has an empty
    store of its own and refuses a workflow, token or not."""
    import requests

    monkeypatch.setenv("TORCHSHIP_TEST_SECRET", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_workers")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # not a secret: passes
    ports = torchserve_server.Ports(*(free_port() for _ in range(5)))
    server = torchserve_server.start(
        LAYOUT.torchserve_config, LAYOUT.model_store, ["tabular_mlp"], ports, tmp_path / "ts"
    )
    try:
        torchserve_server.wait_ready(server, ["tabular_mlp"], timeout_s=240)
        client = TorchServeClient.for_server(server)
        for _ in range(600):  # READY models may still be starting a worker (pid -1)
            workers = client.worker_pids("tabular_mlp")
            if workers and min(workers) > 0:
                break
            time.sleep(0.1)
        assert workers and min(workers) > 0, workers
        for worker in workers:
            environment = psutil.Process(worker).environ()
            assert "TORCHSHIP_TEST_SECRET" not in environment and "HF_TOKEN" not in environment
            assert environment["TOKENIZERS_PARALLELISM"] == "false" and "PATH" in environment
        assert list((server.workdir / "workflow_store").iterdir()) == []
        workflows = f"{server.management_url}/workflows"
        token = {"Authorization": f"Bearer {client.token('management')}"}
        for url in (
            "tabular_mlp.war",
            f"file://{LAYOUT.model_store}/x.war",
            "https://e.invalid/w.war",
        ):
            anonymous = requests.post(workflows, params={"url": url}, timeout=30)
            assert anonymous.status_code == 400 and "token" in anonymous.text.lower(), (
                anonymous.text
            )
            refused = requests.post(workflows, params={"url": url}, headers=token, timeout=30)
            assert 400 <= refused.status_code < 500, (url, refused.status_code, refused.text)
        listed = requests.get(workflows, headers=token, timeout=30)
        assert listed.status_code == 200 and listed.json()["workflows"] == []
        assert client.predict("tabular_mlp", {"inputs": [0.0] * 30})  # still serving
    finally:
        torchserve_server.stop(server.workdir)
