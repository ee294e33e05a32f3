# Replies are protobuf messages (service_pb2), or JSON dicts where as_json=True asks for them.
from typing import Any, Literal, Protocol, Sequence, overload

import numpy.typing as npt

from tritonclient.grpc import model_config_pb2 as model_config_pb2
from tritonclient.grpc import service_pb2 as service_pb2
from tritonclient.utils import InferenceServerException as InferenceServerException

Json = dict[str, Any]
Headers = dict[str, str]

class InferInput:
    def __init__(self, name: str, shape: Sequence[int], datatype: str) -> None: ...
    def name(self) -> str: ...
    def datatype(self) -> str: ...
    def shape(self) -> list[int]: ...
    def set_shape(self, shape: Sequence[int]) -> InferInput: ...
    def set_data_from_numpy(self, input_tensor: npt.NDArray[Any]) -> InferInput: ...

class InferRequestedOutput:
    def __init__(self, name: str, class_count: int = 0) -> None: ...
    def name(self) -> str: ...

class InferResult:
    def __init__(self, result: service_pb2.ModelInferResponse) -> None: ...
    def as_numpy(self, name: str) -> npt.NDArray[Any] | None: ...
    def get_output(
        self, name: str, as_json: bool = False
    ) -> service_pb2.ModelInferResponse.InferOutputTensor | None: ...
    @overload
    def get_response(self, as_json: Literal[False] = False) -> service_pb2.ModelInferResponse: ...
    @overload
    def get_response(self, as_json: Literal[True]) -> Json: ...

class StreamCallback(Protocol):
    # called with keywords, once per response or error
    def __call__(
        self, result: InferResult | None, error: InferenceServerException | None
    ) -> object: ...

class InferenceServerClient:
    def __init__(
        self,
        url: str,
        verbose: bool = False,
        ssl: bool = False,
        root_certificates: str | None = None,
        private_key: str | None = None,
        certificate_chain: str | None = None,
        creds: Any = None,
        keepalive_options: Any = None,
        channel_args: list[tuple[str, Any]] | None = None,
    ) -> None: ...
    def close(self) -> None: ...
    def is_server_live(
        self, headers: Headers | None = None, client_timeout: float | None = None
    ) -> bool: ...
    def is_server_ready(
        self, headers: Headers | None = None, client_timeout: float | None = None
    ) -> bool: ...
    def is_model_ready(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        client_timeout: float | None = None,
    ) -> bool: ...
    @overload
    def get_model_metadata(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        as_json: Literal[False] = False,
        client_timeout: float | None = None,
    ) -> service_pb2.ModelMetadataResponse: ...
    @overload
    def get_model_metadata(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        *,
        as_json: Literal[True],
        client_timeout: float | None = None,
    ) -> Json: ...
    @overload
    def get_model_config(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        as_json: Literal[False] = False,
        client_timeout: float | None = None,
    ) -> service_pb2.ModelConfigResponse: ...
    @overload
    def get_model_config(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        *,
        as_json: Literal[True],
        client_timeout: float | None = None,
    ) -> Json: ...
    @overload
    def get_model_repository_index(
        self,
        headers: Headers | None = None,
        as_json: Literal[False] = False,
        client_timeout: float | None = None,
    ) -> service_pb2.RepositoryIndexResponse: ...
    @overload
    def get_model_repository_index(
        self,
        headers: Headers | None = None,
        *,
        as_json: Literal[True],
        client_timeout: float | None = None,
    ) -> Json: ...
    def load_model(
        self,
        model_name: str,
        headers: Headers | None = None,
        config: str | None = None,
        files: dict[str, bytes] | None = None,
        client_timeout: float | None = None,
    ) -> None: ...
    def unload_model(
        self,
        model_name: str,
        headers: Headers | None = None,
        unload_dependents: bool = False,
        client_timeout: float | None = None,
    ) -> None: ...
    @overload
    def get_inference_statistics(
        self,
        model_name: str = "",
        model_version: str = "",
        headers: Headers | None = None,
        as_json: Literal[False] = False,
        client_timeout: float | None = None,
    ) -> service_pb2.ModelStatisticsResponse: ...
    @overload
    def get_inference_statistics(
        self,
        model_name: str = "",
        model_version: str = "",
        headers: Headers | None = None,
        *,
        as_json: Literal[True],
        client_timeout: float | None = None,
    ) -> Json: ...
    def infer(
        self,
        model_name: str,
        inputs: Sequence[InferInput],
        model_version: str = "",
        outputs: Sequence[InferRequestedOutput] | None = None,
        request_id: str = "",
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
        priority: int = 0,
        timeout: int | None = None,
        client_timeout: float | None = None,
        headers: Headers | None = None,
        compression_algorithm: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> InferResult: ...
    def start_stream(
        self,
        callback: StreamCallback,
        stream_timeout: float | None = None,
        headers: Headers | None = None,
        compression_algorithm: str | None = None,
    ) -> None: ...
    def stop_stream(self, cancel_requests: bool = False) -> None: ...
    def async_stream_infer(
        self,
        model_name: str,
        inputs: Sequence[InferInput],
        model_version: str = "",
        outputs: Sequence[InferRequestedOutput] | None = None,
        request_id: str = "",
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
        enable_empty_final_response: bool = False,
        priority: int = 0,
        timeout: int | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None: ...
