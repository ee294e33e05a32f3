"""Pre-processing kinds: one class each, owning everything about that kind.

A kind is the spec's `task.preprocess` section (its fields are validated by pydantic with the
rest of the spec) and knows, for its kind:
- the asset files it reads (statistics, vocabulary): checked to exist, part of every
  fingerprint, and inlined into the serving plan at build time (`inline`);
- how a request becomes model-input rows at run time (`decode` for one encoded example,
  `from_json` for raw JSON values), and what a client should send (`expected_input`);
- its Triton ensemble input (`ensemble_input`, a BYTES tensor) and how a golden row turns back
  into what a client sends (`encode`), for warmup and load generation.
The base class is in kind_base.py, the text kinds in text_kinds.py; the tensor and image kinds
are here. Adding a kind is one class plus its entry in KINDS and Preprocess.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, PositiveFloat, PrivateAttr, model_validator

from handlers.preprocessing.kind_base import Kind
from handlers.preprocessing.processing import channel_stats, decode_image, pil_to_array, standardize
from handlers.preprocessing.tensors import TensorSpec, check_rows, numeric_array
from handlers.preprocessing.text_kinds import Text, Tokenized

# What a classifier's Triton ensemble answers: the top label (BYTES) and its score (FP32).
ENSEMBLE_OUTPUTS = ("label", "score")


class Raw(Kind):
    """Model-input tensors as they are."""

    kind: Literal["none"] = "none"


class Standardize(Kind):
    """Tabular rows scaled with the training set's mean and standard deviation."""

    kind: Literal["standardize"]
    stats: Path  # JSON with "mean" and "std" lists, written by training
    _mean: NDArray[Any] | None = PrivateAttr(None)  # set by prepare()
    _std: NDArray[Any] | None = PrivateAttr(None)

    def asset_files(self) -> dict[str, Path]:
        return {"stats": self.stats}

    def inline(self, root: Path) -> dict[str, Any]:
        stats = json.loads((root / self.stats).read_text())
        return {"mean": stats["mean"], "std": stats["std"]}

    def prepare(self, assets: dict[str, Any]) -> None:
        self._mean, self._std = np.asarray(assets["mean"]), np.asarray(assets["std"])

    def transform(self, rows: NDArray[Any]) -> NDArray[Any]:
        if self._mean is None or self._std is None:
            raise RuntimeError("standardize: prepare() was not called with the stats")
        return standardize(rows, self._mean, self._std)


class Image(Kind):
    """Encoded PNG/JPEG bytes (or a HxW / CxHxW array) resized and normalised."""

    kind: Literal["image"]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    grayscale: bool = True
    # one value for all channels, or one per channel (e.g. ImageNet's [0.485, 0.456, 0.406])
    mean: float | list[float] = 0.0
    std: PositiveFloat | list[PositiveFloat] = 1.0
    ensemble_input: ClassVar[str | None] = "IMAGE"
    encoded_suffix: ClassVar[str | None] = ".png"
    base64_in_json: ClassVar[bool] = True
    content_types: ClassVar[tuple[str, ...]] = ("", "application/octet-stream")

    @model_validator(mode="after")
    def _stats_per_channel(self) -> Image:
        channels = 1 if self.grayscale else 3
        for field in ("mean", "std"):
            value: float | list[float] = getattr(self, field)
            if isinstance(value, list) and len(value) != channels:
                raise ValueError(
                    f"{field}: {len(value)} values for {channels} channel(s); give one number "
                    f"or {channels}"
                )
        return self

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith("image/") or super().accepts(content_type)

    def expected_input(self, inputs: list[TensorSpec], batched: bool = True) -> str:
        return 'PNG/JPEG bytes (Content-Type: image/png) or JSON {"inputs": HxW or CxHxW array}'

    def decode(self, item: bytes | str, tensor: TensorSpec) -> NDArray[Any]:
        image = decode_image(item if isinstance(item, bytes) else item.encode())
        return pil_to_array(image, self.height, self.width, self.grayscale, self.mean, self.std)

    def from_json(
        self, value: Any, tensor: TensorSpec, max_batch: int
    ) -> tuple[NDArray[Any], bool]:
        pixels = numeric_array(value, "inputs", np.float32)
        if not max_batch:  # no batch axis: one CxHxW array (HxW for one channel)
            pixels = pixels[None] if pixels.ndim == 2 else pixels
            return check_rows(tensor, pixels, max_batch), True
        if pixels.ndim == 2:  # one grayscale HxW array
            pixels, single = pixels[None, None], True
        elif pixels.ndim == 3:  # one CxHxW array, or several HxW ones
            single = pixels.shape[0] == tensor.shape[1]
            pixels = pixels[None] if single else pixels[:, None]
        else:
            single = False
        return check_rows(tensor, pixels, max_batch), single

    def encode(self, row: NDArray[Any], assets: dict[str, Any]) -> bytes:
        from PIL import Image as PILImage

        pixels = row * channel_stats(self.std) + channel_stats(self.mean)
        pixels = np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
        image = PILImage.fromarray(pixels[0] if self.grayscale else pixels.transpose(1, 2, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


KINDS: dict[str, type[Kind]] = {
    "none": Raw,
    "standardize": Standardize,
    "image": Image,
    "text": Text,
    "tokenizer": Tokenized,
}
Preprocess = Annotated[Union[Raw, Standardize, Image, Text, Tokenized], Field(discriminator="kind")]
