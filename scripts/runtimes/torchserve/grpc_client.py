"""TorchServe over gRPC: stubs compiled at build time from the .proto files that the installed
TorchServe carries inside ts/frontend/model-server.jar (no copies kept in this repository)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import grpc

from scripts.pipeline.fingerprint import file_digest, is_fresh, write_stamp
from scripts.runtimes.torchserve.client import Json, TorchServeError

if TYPE_CHECKING:
    from scripts.runtimes.torchserve.server import TorchServe

PROTOS = ("inference.proto", "management.proto")
DEPENDENCIES = ("google/rpc/status.proto",)  # imported by inference.proto; also inside the jar


def server_jar() -> Path:
    import ts

    return Path(ts.__file__).parent / "frontend" / "model-server.jar"


def compile_stubs(out: Path) -> Path:
    """Extract the protos from the jar and run grpc_tools.protoc on them (incremental). Built in
    a scratch folder and moved into place file by file, so a concurrent reader never sees a
    half-written module."""
    from grpc_tools import protoc

    jar = server_jar()
    stamp = out / "stamp.json"
    digest = file_digest(jar)
    if is_fresh(stamp, digest, [out / f"{Path(p).stem}_pb2_grpc.py" for p in PROTOS]):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        scratch = Path(tmp)
        with zipfile.ZipFile(jar) as archive:
            for name in (*DEPENDENCIES, *[f"proto/{p}" for p in PROTOS]):
                target = scratch / name.removeprefix("proto/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
        include = (
            Path(protoc.__file__).parent / "_proto"
        )  # google/protobuf/*.proto from grpcio-tools
        for name in (*DEPENDENCIES, *PROTOS):
            if (
                protoc.main(
                    [
                        "protoc",
                        f"-I{scratch}",
                        f"-I{include}",
                        f"--python_out={scratch}",
                        f"--grpc_python_out={scratch}",
                        str(scratch / name),
                    ]
                )
                != 0
            ):
                raise RuntimeError(f"protoc failed on {name} from {jar}")
        for built in scratch.rglob("*.py"):
            target = out / built.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(built, target)
    write_stamp(stamp, digest)
    return out


_import_lock = threading.Lock()


def load_stubs(out: Path) -> tuple[ModuleType, ...]:
    """(inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc); thread-safe."""
    with _import_lock:
        folder = str(compile_stubs(out).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return tuple(
            importlib.import_module(m)
            for m in (
                "inference_pb2",
                "inference_pb2_grpc",
                "management_pb2",
                "management_pb2_grpc",
            )
        )


class TorchServeGrpcClient:
    """Predictions and model listing over TorchServe's gRPC APIs, with the token as metadata."""

    def __init__(
        self,
        inference_port: int,
        management_port: int,
        key_file: Path,
        timeout_s: float = 60,
        stubs: Path | None = None,
    ):
        """`stubs`: where the stubs are compiled (default: beside the key file, in the
        server's workdir)."""
        stubs = stubs or Path(key_file).parent / "grpc_stubs"
        self.inference_pb2, inference_grpc, self.management_pb2, management_grpc = load_stubs(stubs)
        self.key_file, self.timeout_s = Path(key_file), timeout_s
        self.inference = inference_grpc.InferenceAPIsServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{inference_port}")
        )
        self.management = management_grpc.ManagementAPIsServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{management_port}")
        )

    @classmethod
    def for_server(cls, server: TorchServe) -> TorchServeGrpcClient:
        return cls(
            server.ports.grpc_inference,
            server.ports.grpc_management,
            server.key_file,
            stubs=server.grpc_stubs,
        )

    def _metadata(self, api: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {json.loads(self.key_file.read_text())[api]['key']}")]

    def predict_raw(self, model: str, body: bytes | str, version: str | None = None) -> bytes:
        """Raises grpc.RpcError on a refused request (its .code() and .details() say why)."""
        request = self.inference_pb2.PredictionsRequest(
            model_name=model,
            model_version=version or "",
            input={"data": body.encode() if isinstance(body, str) else body},
        )
        return self.inference.Predictions(
            request, metadata=self._metadata("inference"), timeout=self.timeout_s
        ).prediction

    def predict(self, model: str, body: Any, version: str | None = None) -> Any:
        """The decoded answer. TorchServe 0.12's gRPC frontend drops the handler's per-request
        status (a 400 arrives as OK), so the status is read back from our JSON error body."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        answer = json.loads(self.predict_raw(model, body, version))
        code = _error_code(answer)
        if code is not None and code >= 400:
            raise TorchServeError(code, json.dumps(answer))
        return answer

    def list_models(self) -> list[Json]:
        reply = self.management.ListModels(
            self.management_pb2.ListModelsRequest(limit=1000),
            metadata=self._metadata("management"),
            timeout=self.timeout_s,
        )
        return json.loads(reply.msg)["models"]


def _error_code(answer: object) -> int | None:
    """The "code" of a JSON object answer (our error body carries the status there)."""
    code = cast(Json, answer).get("code") if isinstance(answer, dict) else None
    return code if isinstance(code, int) else None
