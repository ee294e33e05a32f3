"""The setups `make bench` measures side by side, and where bench and tune work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    runtime: str  # a plugin name: triton | torchserve
    stock: bool
    protocols: tuple[str, ...]
    int8: bool = False  # this project's deployment serving the gated int8 ONNX instead


SETUPS = [
    Setup(
        "triton_stock",
        "Triton, per-request Python backend (stock)",
        "triton",
        True,
        ("http", "grpc"),
    ),
    Setup("triton", "Triton, this project", "triton", False, ("http", "grpc")),
    Setup(
        "torchserve_stock",
        "TorchServe, BaseHandler + TorchScript, batch 1 (stock)",
        "torchserve",
        True,
        ("http",),
    ),
    Setup("torchserve", "TorchServe, this project", "torchserve", False, ("http",)),
    Setup("triton_int8", "Triton, this project, int8 ONNX", "triton", False, ("http",), int8=True),
    Setup(
        "torchserve_int8",
        "TorchServe, this project, int8 ONNX",
        "torchserve",
        False,
        ("http",),
        int8=True,
    ),
]
SETUP_BY_KEY = {s.key: s for s in SETUPS}
STOCK_OF = {"triton": "triton_stock", "torchserve": "torchserve_stock"}
