"""Pre-processing kinds: one class each, owning everything about that kind.

A kind is the spec's `task.preprocess` section (its fields are validated by pydantic with the
rest of the spec) and knows, for its kind:
- the asset files it reads (statistics, vocabulary): checked to exist, part of every
  fingerprint, and inlined into the serving plan at build time (`inline`);
- how a request becomes model-input rows at run time (`decode` for one encoded example,
  `from_json` for raw JSON values), and what a client should send (`expected_input`);
- its Triton ensemble input (`ensemble_input`, a BYTES tensor) and how a golden row turns back
  into what a client sends (`encode`), for warmup and load generation.
Adding a kind is one class here plus its entry in KINDS.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PrivateAttr, model_validator

from handlers.processing import (
    RequestError,
    channel_stats,
    decode_image,
    pil_to_array,
    standardize,
    tokenize,
)
from handlers.tensors import TensorSpec, check_rows, check_shape, numeric_array

# What a classifier's Triton ensemble answers: the top label (BYTES) and its score (FP32).
ENSEMBLE_OUTPUTS = ("label", "score")


class Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ensemble_input: ClassVar[str | None] = None  # Triton ensemble input (BYTES); None: no ensemble
    content_types: ClassVar[tuple[str, ...]] = ()  # raw (non-JSON) bodies this kind decodes
    encoded_suffix: ClassVar[str | None] = None  # file suffix of what encode() writes
    base64_in_json: ClassVar[bool] = False  # encoded items are binary: base64 in JSON bodies

    # --- build time ---------------------------------------------------------------------------
    def asset_files(self) -> dict[str, Path]:
        """{spec field: file} read by this kind; relative to the spec's folder."""
        return {}

    def inline(self, root: Path) -> dict[str, Any]:
        """The assets' content, shipped inside the serving plan (servers read no other file)."""
        return {}

    def encode(self, row: np.ndarray, assets: dict[str, Any]) -> bytes:
        """A model-input row turned back into what a client sends (ensemble kinds only)."""
        raise NotImplementedError(f"{self.kind} has no encoded request form")

    # --- run time -----------------------------------------------------------------------------
    def prepare(self, assets: dict[str, Any]) -> None:
        """Make run-time lookups from the inlined assets (called once when a model loads)."""

    def expected_input(self, inputs: list[TensorSpec]) -> str:
        tensors = ", ".join(f"{t.name} {t.dtype} {t.shape[1:]}" for t in inputs)
        return f'JSON {{"inputs": ...}} with {tensors} per example'

    def accepts(self, content_type: str) -> bool:
        return content_type in self.content_types

    def decode(self, item: bytes | str, tensor: TensorSpec) -> np.ndarray:
        """One encoded example (image bytes, a text) -> one unchecked model-input row."""
        raise RequestError("this model takes no encoded bytes or text: send JSON")

    def produces(self, inputs: list[TensorSpec]) -> list[TensorSpec]:
        """The model inputs this kind fills from an encoded request: the first, unless the kind
        makes several (token ids and their mask)."""
        return inputs[:1]

    def decode_items(
        self, items: list, inputs: list[TensorSpec], max_batch: int
    ) -> dict[str, np.ndarray]:
        """Encoded examples -> checked rows of every input the kind produces."""
        first = inputs[0]
        return {
            first.name: check_rows(
                first, np.stack([self.decode(item, first) for item in items]), max_batch
            )
        }

    def json_inputs(
        self, value: Any, inputs: list[TensorSpec], max_batch: int
    ) -> tuple[dict[str, np.ndarray], bool]:
        """The JSON value of "inputs" (not a mapping of tensors) -> (checked rows by input, single?)."""
        if len(inputs) > 1:
            raise RequestError(
                'this model has several inputs: send {"inputs": {name: array}} '
                f"with {self.expected_input(inputs)}"
            )
        rows, single = self.from_json(value, inputs[0], max_batch)
        return {inputs[0].name: rows}, single

    def from_json(self, value: Any, tensor: TensorSpec, max_batch: int) -> tuple[np.ndarray, bool]:
        """Raw JSON values of the first input -> (checked rows, single example?)."""
        rows = numeric_array(value, "inputs", tensor.numpy)
        single = rows.ndim == len(tensor.shape) - 1
        rows = rows[None] if single else rows
        check_shape(tensor, rows)
        return check_rows(tensor, self.transform(rows), max_batch), single

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return rows


class Raw(Kind):
    """Model-input tensors as they are."""

    kind: Literal["none"] = "none"


class Standardize(Kind):
    """Tabular rows scaled with the training set's mean and standard deviation."""

    kind: Literal["standardize"]
    stats: Path  # JSON with "mean" and "std" lists, written by training
    _mean: np.ndarray = PrivateAttr(None)
    _std: np.ndarray = PrivateAttr(None)

    def asset_files(self) -> dict[str, Path]:
        return {"stats": self.stats}

    def inline(self, root: Path) -> dict[str, Any]:
        stats = json.loads((root / self.stats).read_text())
        return {"mean": stats["mean"], "std": stats["std"]}

    def prepare(self, assets: dict[str, Any]) -> None:
        self._mean, self._std = np.asarray(assets["mean"]), np.asarray(assets["std"])

    def transform(self, rows: np.ndarray) -> np.ndarray:
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
    ensemble_input: ClassVar[str] = "IMAGE"
    encoded_suffix: ClassVar[str] = ".png"
    base64_in_json: ClassVar[bool] = True
    content_types: ClassVar[tuple[str, ...]] = ("", "application/octet-stream")

    @model_validator(mode="after")
    def _stats_per_channel(self) -> Image:
        channels = 1 if self.grayscale else 3
        for field in ("mean", "std"):
            value = getattr(self, field)
            if isinstance(value, list) and len(value) != channels:
                raise ValueError(
                    f"{field}: {len(value)} values for {channels} channel(s); give one number "
                    f"or {channels}"
                )
        return self

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith("image/") or super().accepts(content_type)

    def expected_input(self, inputs: list[TensorSpec]) -> str:
        return 'PNG/JPEG bytes (Content-Type: image/png) or JSON {"inputs": HxW array}'

    def decode(self, item: bytes | str, tensor: TensorSpec) -> np.ndarray:
        image = decode_image(item if isinstance(item, bytes) else item.encode())
        return pil_to_array(image, self.height, self.width, self.grayscale, self.mean, self.std)

    def from_json(self, value: Any, tensor: TensorSpec, max_batch: int) -> tuple[np.ndarray, bool]:
        pixels = numeric_array(value, "inputs", np.float32)
        if pixels.ndim == 2:  # one grayscale HxW array
            pixels, single = pixels[None, None], True
        elif pixels.ndim == 3:  # one CxHxW array, or several HxW ones
            single = pixels.shape[0] == tensor.shape[1]
            pixels = pixels[None] if single else pixels[:, None]
        else:
            single = False
        return check_rows(tensor, pixels, max_batch), single

    def encode(self, row: np.ndarray, assets: dict[str, Any]) -> bytes:
        from PIL import Image as PILImage

        pixels = row * channel_stats(self.std) + channel_stats(self.mean)
        pixels = np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
        image = PILImage.fromarray(pixels[0] if self.grayscale else pixels.transpose(1, 2, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


class Text(Kind):
    """UTF-8 text split into words and mapped to ids with the training vocabulary."""

    kind: Literal["text"]
    vocab: Path  # JSON {"tokens": [...]}: id = position; 0 pads, 1 is the unknown word
    max_length: int = Field(gt=0)
    lowercase: bool = True
    ensemble_input: ClassVar[str] = "TEXT"
    encoded_suffix: ClassVar[str] = ".txt"
    content_types: ClassVar[tuple[str, ...]] = ("", "text/plain")
    _ids: dict[str, int] = PrivateAttr(default_factory=dict)

    def asset_files(self) -> dict[str, Path]:
        return {"vocab": self.vocab}

    def inline(self, root: Path) -> dict[str, Any]:
        return {"tokens": json.loads((root / self.vocab).read_text())["tokens"]}

    def prepare(self, assets: dict[str, Any]) -> None:
        self._ids = {token: i for i, token in enumerate(assets["tokens"])}

    def expected_input(self, inputs: list[TensorSpec]) -> str:
        return 'text (Content-Type: text/plain) or JSON {"inputs": "a sentence"}'

    @staticmethod
    def as_text(item: bytes | str) -> str:
        """A request's text, or RequestError when it is not UTF-8 or empty."""
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(
                    f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
        if not item.strip():
            raise RequestError("empty text: send a non-empty sentence")
        return item

    def decode(self, item: bytes | str, tensor: TensorSpec) -> np.ndarray:
        return tokenize(self.as_text(item), self._ids, self.max_length, self.lowercase)

    def from_json(self, value: Any, tensor: TensorSpec, max_batch: int) -> tuple[np.ndarray, bool]:
        texts, single = ([value], True) if isinstance(value, str) else (value, False)
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError(
                f"expected a string or a list of strings; send {self.expected_input([tensor])}"
            )
        return check_rows(
            tensor, np.stack([self.decode(t, tensor) for t in texts]), max_batch
        ), single

    def encode(self, row: np.ndarray, assets: dict[str, Any]) -> bytes:
        tokens = assets["tokens"]
        return " ".join(tokens[i] for i in row.reshape(-1) if i > 1).encode() or b"hello"


class Tokenized(Kind):
    """UTF-8 text through a Hugging Face `tokenizer.json` (the `tokenizers` library): token ids
    and an attention mask, padded to the longest text of the request."""

    kind: Literal["tokenizer"]
    tokenizer: Path  # tokenizer.json
    max_length: int = Field(gt=0)  # longer texts are truncated
    ids: str = "input_ids"  # the model input that takes the token ids
    mask: str | None = (
        "attention_mask"  # the model input that takes the mask (1 = token, 0 = padding)
    )
    ensemble_input: ClassVar[str] = "TEXT"
    content_types: ClassVar[tuple[str, ...]] = ("", "text/plain")
    encoded_suffix: ClassVar[str] = ".txt"
    _tokenizer: Any = PrivateAttr(None)
    _pad_id: int = PrivateAttr(0)

    def asset_files(self) -> dict[str, Path]:
        return {"tokenizer": self.tokenizer}

    def inline(self, root: Path) -> dict[str, Any]:
        return {"tokenizer": (root / self.tokenizer).read_text(encoding="utf-8")}

    def prepare(self, assets: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(assets["tokenizer"])
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        self._pad_id = self._tokenizer.token_to_id("[PAD]") or 0

    def produces(self, inputs: list[TensorSpec]) -> list[TensorSpec]:
        by_name = {t.name: t for t in inputs}
        wanted = [self.ids] + ([self.mask] if self.mask else [])
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ValueError(
                f"task.preprocess names inputs {missing} that the spec does not list "
                f"(inputs: {sorted(by_name)}); set ids/mask to the model's input names"
            )
        return [by_name[n] for n in wanted]

    def expected_input(self, inputs: list[TensorSpec]) -> str:
        return (
            'text (Content-Type: text/plain) or JSON {"inputs": "a sentence"} (or a list of them)'
        )

    def decode_items(
        self, items: list, inputs: list[TensorSpec], max_batch: int
    ) -> dict[str, np.ndarray]:
        texts = [Text.as_text(item) for item in items]
        encodings = self._tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), length), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)], mask[row, : len(encoding.ids)] = encoding.ids, 1
        produced = self.produces(inputs)
        return {t.name: check_rows(t, rows, max_batch) for t, rows in zip(produced, (ids, mask))}

    def json_inputs(
        self, value: Any, inputs: list[TensorSpec], max_batch: int
    ) -> tuple[dict[str, np.ndarray], bool]:
        texts, single = ([value], True) if isinstance(value, str) else (value, False)
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError(
                f"expected a string or a list of strings; send {self.expected_input(inputs)}"
            )
        return self.decode_items(texts, inputs, max_batch), single

    def encode(self, row: np.ndarray, assets: dict[str, Any]) -> bytes:
        from tokenizers import Tokenizer

        text = Tokenizer.from_str(assets["tokenizer"]).decode([int(i) for i in row.reshape(-1)])
        return text.encode("utf-8") or b"hello"


KINDS: dict[str, type[Kind]] = {
    "none": Raw,
    "standardize": Standardize,
    "image": Image,
    "text": Text,
    "tokenizer": Tokenized,
}
Preprocess = Annotated[Union[Raw, Standardize, Image, Text, Tokenized], Field(discriminator="kind")]
