# Replies are the server's JSON, as dicts.
from typing import Any, Sequence

import numpy.typing as npt

from tritonclient.utils import InferenceServerException as InferenceServerException

Json = dict[str, Any]
Headers = dict[str, str]
QueryParams = dict[str, Any]

class InferInput:
    def __init__(self, name: str, shape: Sequence[int], datatype: str) -> None: ...
    def name(self) -> str: ...
    def datatype(self) -> str: ...
    def shape(self) -> list[int]: ...
    def set_shape(self, shape: Sequence[int]) -> InferInput: ...
    def set_data_from_numpy(
        self, input_tensor: npt.NDArray[Any], binary_data: bool = True
    ) -> InferInput: ...

class InferRequestedOutput:
    def __init__(self, name: str, binary_data: bool = True, class_count: int = 0) -> None: ...
    def name(self) -> str: ...

class InferResult:
    def as_numpy(self, name: str) -> npt.NDArray[Any] | None: ...
    def get_output(self, name: str) -> Json | None: ...
    def get_response(self) -> Json: ...

class InferenceServerClient:
    def __init__(
        self,
        url: str,
        verbose: bool = False,
        concurrency: int = 1,
        connection_timeout: float = 60.0,
        network_timeout: float = 60.0,
        max_greenlets: int | None = None,
        ssl: bool = False,
        ssl_options: dict[str, Any] | None = None,
        ssl_context_factory: Any = None,
        insecure: bool = False,
    ) -> None: ...
    def close(self) -> None: ...
    def is_server_live(
        self, headers: Headers | None = None, query_params: QueryParams | None = None
    ) -> bool: ...
    def is_server_ready(
        self, headers: Headers | None = None, query_params: QueryParams | None = None
    ) -> bool: ...
    def is_model_ready(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
    ) -> bool: ...
    def get_model_metadata(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
    ) -> Json: ...
    def get_model_config(
        self,
        model_name: str,
        model_version: str = "",
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
    ) -> Json: ...
    def get_model_repository_index(
        self, headers: Headers | None = None, query_params: QueryParams | None = None
    ) -> list[Json]: ...
    def load_model(
        self,
        model_name: str,
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
        config: str | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None: ...
    def unload_model(
        self,
        model_name: str,
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
        unload_dependents: bool = False,
    ) -> None: ...
    def get_inference_statistics(
        self,
        model_name: str = "",
        model_version: str = "",
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
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
        headers: Headers | None = None,
        query_params: QueryParams | None = None,
        request_compression_algorithm: str | None = None,
        response_compression_algorithm: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> InferResult: ...
