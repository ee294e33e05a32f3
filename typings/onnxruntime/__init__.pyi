"""The part of onnxruntime (which ships no type information) that the project uses: sessions
for handlers/formats/onnx.py, the version for scripts/pipeline/export.py. This stub shadows the
installed package for pyright, so each submodule the project imports has a stub here too
(quantization/)."""

from collections.abc import Mapping, Sequence
from enum import Enum
from os import PathLike
from typing import Any

from numpy.typing import NDArray

__version__: str

class GraphOptimizationLevel(Enum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99

class SessionOptions:
    intra_op_num_threads: int
    inter_op_num_threads: int
    graph_optimization_level: GraphOptimizationLevel
    def __init__(self) -> None: ...

class RunOptions:
    def __init__(self) -> None: ...

class NodeArg:
    """An input's or output's metadata: its name, shape (dims are ints, names or None) and type
    ("tensor(float)")."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> list[int | str | None]: ...
    @property
    def type(self) -> str: ...

class SparseTensor: ...

class InferenceSession:
    def __init__(
        self,
        path_or_bytes: str | bytes | PathLike[str],
        sess_options: SessionOptions | None = None,
        providers: Sequence[str | tuple[str, dict[Any, Any]]] | None = None,
        provider_options: Sequence[dict[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> None: ...
    def get_inputs(self) -> Sequence[NodeArg]: ...
    def get_outputs(self) -> Sequence[NodeArg]: ...
    def get_providers(self) -> list[str]: ...
    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[NDArray[Any] | SparseTensor | list[Any] | dict[Any, Any]]:
        """One result per output: a numpy array for a dense tensor, else a sparse tensor, a list
        (an ONNX sequence) or a dict (an ONNX map)."""
