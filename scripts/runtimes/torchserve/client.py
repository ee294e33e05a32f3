"""A TorchServe client: predictions over REST with the token from key_file.json, and the
management API (list, describe, scale workers, register/unregister a version, set default).

Used by the tests, `make verify` and rollouts. Every non-2xx reply raises TorchServeError with
TorchServe's own status and message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from scripts.runtimes.protocols import GatewayPass

if TYPE_CHECKING:
    from scripts.runtimes.torchserve.server import TorchServe

Json = dict[str, Any]  # a JSON object from the management or inference API


class TorchServeError(Exception):
    def __init__(self, status: int, body: str):
        self.status, self.body = status, body
        try:
            self.message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            self.message = body
        super().__init__(f"TorchServe answered {status}: {self.message}")


class TorchServeClient:
    def __init__(
        self,
        inference_url: str,
        management_url: str,
        key_file: Path | None,
        timeout_s: float = 60,
        bearer: str | None = None,
    ):
        self.inference_url, self.management_url = (
            inference_url.rstrip("/"),
            management_url.rstrip("/"),
        )
        self.key_file, self.timeout_s = key_file, timeout_s
        self.bearer = bearer  # one key for every API (a gateway client's), instead of the file's
        self.verify: str | bool = True  # HTTPS: the CA file to verify the server with
        self.session = requests.Session()
        # one client may carry many streams at once (bench-generation's 64): one connection each
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(pool_maxsize=64))

    @classmethod
    def for_server(cls, server: TorchServe) -> TorchServeClient:
        """From a running scripts.runtimes.torchserve.server.TorchServe."""
        return cls(server.inference_url, server.management_url, server.key_file)

    @classmethod
    def through(cls, passage: GatewayPass) -> TorchServeClient:
        """Through the gateway with a client's key, its certificate verified."""
        client = cls(passage.url, passage.url, None, bearer=passage.key)
        # per request: requests lets REQUESTS_CA_BUNDLE override a session's own `verify`
        client.verify = str(passage.certificate)
        return client

    def token(self, api: str) -> str:
        """Read fresh each call: TorchServe rewrites the file when keys are refreshed."""
        if self.bearer is not None:
            return self.bearer
        assert self.key_file is not None  # one of the two is given
        return json.loads(Path(self.key_file).read_text())[api]["key"]

    # --- inference ---------------------------------------------------------------------------

    def predict_raw(
        self,
        model: str,
        body: Any,
        content_type: str | None = None,
        version: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """POST /predictions/<model>[/<version>]; dict/list bodies are sent as JSON. `stream`:
        the reply is read as it arrives (a generation model's chunks)."""
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body), content_type or "application/json"
        headers = {"Authorization": f"Bearer {self.token('inference')}"}
        if content_type:
            headers["Content-Type"] = content_type
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        return self.session.post(
            self.inference_url + path,
            data=body,
            headers=headers,
            timeout=self.timeout_s,
            stream=stream,
            verify=self.verify,
        )

    def predict(
        self, model: str, body: Any, content_type: str | None = None, version: str | None = None
    ) -> Any:
        return _json(self.predict_raw(model, body, content_type, version))

    def ping(self) -> Json:
        return _json(
            self.session.get(
                f"{self.inference_url}/ping",
                timeout=self.timeout_s,
                headers={"Authorization": f"Bearer {self.token('inference')}"},
                verify=self.verify,
            )
        )

    # --- management --------------------------------------------------------------------------

    def _manage(self, method: str, path: str, **params: str | int | None) -> Any:
        reply = self.session.request(
            method,
            self.management_url + path,
            timeout=self.timeout_s,
            params={k: v for k, v in params.items() if v is not None},
            headers={"Authorization": f"Bearer {self.token('management')}"},
            verify=self.verify,
        )
        return _json(reply)

    def list_models(self) -> list[Json]:
        return self._manage("GET", "/models")["models"]

    def describe(self, model: str, version: str | None = None) -> list[Json]:
        return self._manage("GET", f"/models/{model}" + (f"/{version}" if version else ""))

    def scale(
        self,
        model: str,
        min_workers: int,
        max_workers: int | None = None,
        version: str | None = None,
    ) -> Json:
        return self._manage(
            "PUT",
            f"/models/{model}" + (f"/{version}" if version else ""),
            min_worker=min_workers,
            max_worker=max_workers or min_workers,
            synchronous="true",
        )

    def register(self, url: str, initial_workers: int = 1) -> Json:
        """Needs enable_model_api=true; TorchServe refuses it (405) in the hardened default."""
        return self._manage(
            "POST", "/models", url=url, initial_workers=initial_workers, synchronous="true"
        )

    def unregister(self, model: str, version: str | None = None) -> Json:
        return self._manage("DELETE", f"/models/{model}" + (f"/{version}" if version else ""))

    def set_default(self, model: str, version: str) -> Json:
        return self._manage("PUT", f"/models/{model}/{version}/set-default")

    def worker_pids(self, model: str) -> list[int]:
        """Pids of the workers that have a process; TorchServe reports -1 for one still starting."""
        workers: list[Json] = [
            w for entry in self.describe(model) for w in entry.get("workers", [])
        ]
        return sorted(w["pid"] for w in workers if w.get("pid", -1) > 0)


def _json(reply: requests.Response) -> Any:
    if not reply.ok:
        raise TorchServeError(reply.status_code, reply.text)
    try:
        return reply.json()
    except ValueError:
        return reply.text
