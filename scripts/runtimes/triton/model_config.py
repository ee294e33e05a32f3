"""tritonclient's generated config protobuf (model_config_pb2), imported in this one place.

protoc's Python module builds its classes at import from a serialized descriptor, so a type
checker sees none of them ("ModelConfig is not a known attribute"). Until typed stubs are
generated for it (mypy-protobuf), the module is `Any` here and `ModelConfig` names the message
in annotations; configs.py checks each config against Triton's rules instead."""

from __future__ import annotations

from typing import Any, TypeAlias

from tritonclient.grpc import model_config_pb2

mc: Any = model_config_pb2
ModelConfig: TypeAlias = Any  # model_config_pb2.ModelConfig
