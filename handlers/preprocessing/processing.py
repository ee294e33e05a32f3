"""Pre- and post-processing shared by training, the TorchServe handler and Triton's Python models.

Plain functions over numpy arrays and bytes: no framework types, so every runtime can call them.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image, UnidentifiedImageError


class RequestError(ValueError):
    """A client-side problem with one request; the runtime answers it with a 4xx. `reason`
    (shape, dtype, range, decode, size or invalid) labels the rejection in the metrics."""

    status = 400  # the HTTP status it is answered with

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


def unicode_text(value: str) -> str:
    """Text that UTF-8 can carry: a lone surrogate (JSON's "\\ud800") cannot be tokenized.
    ValueError, so pydantic validators can use it; callers outside pydantic re-raise it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode (a lone surrogate at character {exc.start})") from None
    return value


# --- tabular ---------------------------------------------------------------------------------


def standardize(rows: ArrayLike, mean: NDArray[Any], std: NDArray[Any]) -> NDArray[np.float32]:
    """Scale raw feature rows with the training set's statistics."""
    return ((np.asarray(rows, dtype=np.float64) - mean) / std).astype(np.float32)


# --- images ----------------------------------------------------------------------------------


def channel_stats(value: float | list[float]) -> NDArray[np.float32]:
    """One mean/std for every channel, or one per channel (ImageNet style), as (C, 1, 1)."""
    return np.asarray(value, dtype=np.float32).reshape(-1, 1, 1)


def pil_to_array(
    image: Image.Image,
    height: int,
    width: int,
    grayscale: bool,
    mean: float | list[float],
    std: float | list[float],
) -> NDArray[np.float32]:
    """PIL image -> normalized float32 array of shape (channels, height, width)."""
    image = image.convert("L" if grayscale else "RGB")
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels[None] if grayscale else pixels.transpose(2, 0, 1)
    return ((pixels - channel_stats(mean)) / channel_stats(std)).astype(np.float32)


def decode_image(data: bytes) -> Image.Image:
    """Encoded PNG/JPEG/... bytes -> PIL image, or RequestError naming the problem."""
    if not data:
        raise RequestError("empty body: send PNG or JPEG image bytes")
    try:
        probe = Image.open(io.BytesIO(data))  # the header only: the size is known, no pixels
        check_pixels(probe)
        probe.verify()  # checksums and structure: corrupt files fail here
        image = Image.open(io.BytesIO(data))
        image.load()  # a full decode, so truncated pixel data fails here, not later
    except RequestError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own check, at twice its limit
        raise RequestError(f"image too large: {exc}", "size") from None
    except UnidentifiedImageError:
        raise RequestError(
            f"cannot decode image ({len(data)} bytes): not a recognized image "
            "format; send a PNG or JPEG file",
            "decode",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(
            f"cannot decode image ({len(data)} bytes): {exc}; send a complete PNG or JPEG file",
            "decode",
        ) from None
    return image


def check_pixels(image: Image.Image) -> None:
    """Refuse an image bigger than PIL's decompression-bomb limit (~89 Mpx) before decoding:
    a few KB of PNG can ask for gigabytes of pixels."""
    pixels, limit = image.width * image.height, Image.MAX_IMAGE_PIXELS
    if limit and pixels > limit:
        raise RequestError(
            f"image too large: {image.width}x{image.height} is {pixels} pixels, over "
            f"{limit}; send a smaller image",
            "size",
        )


# --- text ------------------------------------------------------------------------------------

PAD_ID, UNKNOWN_ID = 0, 1
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']", re.IGNORECASE)


def split_words(text: str, lowercase: bool = True) -> list[str]:
    return _WORD.findall(text.lower() if lowercase else text)


def tokenize(
    text: str, vocab: dict[str, int], max_length: int, lowercase: bool = True
) -> NDArray[np.int64]:
    """Text -> int64 ids of length max_length: unknown words map to UNKNOWN_ID, and the
    sequence is left-padded with PAD_ID (the LSTM reads the real words last) or truncated."""
    ids = [vocab.get(word, UNKNOWN_ID) for word in split_words(text, lowercase)][:max_length]
    return np.array([PAD_ID] * (max_length - len(ids)) + ids, dtype=np.int64)


# --- classification --------------------------------------------------------------------------


def softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def class_scores(output: NDArray[Any], output_kind: str) -> NDArray[np.float64]:
    """One model output row per example -> class probabilities per example.

    A single probability column is a binary classifier: [1 - p, p]."""
    output = np.asarray(output, dtype=np.float64)
    if output.ndim == 1:
        output = output[:, None]
    if output_kind == "logits":
        return softmax(output) if output.shape[1] > 1 else _binary(1.0 / (1.0 + np.exp(-output)))
    return output if output.shape[1] > 1 else _binary(output)


def l2_normalized(rows: NDArray[Any]) -> NDArray[np.float64]:
    """Each vector (the last axis) scaled to length 1; a zero vector stays zero."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def _binary(p: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.concatenate([1.0 - p, p], axis=1)


def top_labels(scores: NDArray[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
    """Class probabilities per example -> [{"label": ..., "score": ..., "top_k": [...]}, ...]."""
    results: list[dict[str, Any]] = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_k]
        ranked: list[dict[str, Any]] = [{"label": labels[i], "score": float(row[i])} for i in order]
        results.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "top_k": ranked})
    return results
