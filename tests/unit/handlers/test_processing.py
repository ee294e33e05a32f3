"""The shared pre/post-processing functions (used by training and both runtimes)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from handlers.preprocessing.processing import (
    PAD_ID,
    UNKNOWN_ID,
    RequestError,
    class_scores,
    decode_image,
    pil_to_array,
    tokenize,
    top_labels,
)


def test_tokenize_lowercases_left_pads_and_marks_unknown_words():
    vocab = {"<pad>": 0, "<unk>": 1, "the": 2, "movie": 3, "was": 4, "great": 5}
    ids = tokenize("The MOVIE was superb", vocab, max_length=6)
    assert ids.dtype == np.int64 and ids.tolist() == [PAD_ID, PAD_ID, 2, 3, 4, UNKNOWN_ID]
    assert tokenize("the " * 10, vocab, max_length=3).tolist() == [2, 2, 2]


def test_image_bytes_become_normalized_28x28():
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (255, 255, 255)).save(buffer, format="PNG")
    array = pil_to_array(decode_image(buffer.getvalue()), 28, 28, True, 0.5, 0.5)
    assert array.shape == (1, 28, 28) and array.dtype == np.float32
    assert np.allclose(array, 1.0)


@pytest.mark.parametrize("payload", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_undecodable_images_are_request_errors(payload):
    with pytest.raises(RequestError):
        decode_image(payload)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (its CRC made right again)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[start : start + 17]))
    data[start + 17 : start + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("side", [10_000, 20_000])  # over PIL's 89 Mpx warning, over its 179 Mpx
def test_a_decompression_bomb_is_a_size_error_before_any_pixel_is_decoded(side):
    with pytest.raises(RequestError, match="image too large") as error:
        decode_image(bomb_png(side, side))
    assert error.value.reason == "size"


def test_too_many_examples_are_refused_before_any_is_decoded():
    from handlers.preprocessing.kinds import Image as ImageKind
    from handlers.preprocessing.tensors import TensorSpec

    kind = ImageKind(kind="image", height=28, width=28, grayscale=True)
    tensor = TensorSpec(name="image", dtype="float32", shape=[-1, 1, 28, 28])
    with pytest.raises(RequestError, match="5 examples in one request; at most 2"):
        kind.decode_items([b"junk"] * 5, [tensor], max_batch=2)


def test_a_lone_surrogate_text_is_a_decode_error():
    from handlers.preprocessing.text_kinds import Text

    with pytest.raises(RequestError, match="lone surrogate at character 4"):
        Text.as_text("the \ud800 film")


def test_class_scores_for_sigmoid_and_logits():
    binary = class_scores(np.array([[0.9], [0.2]]), "probabilities")
    assert np.allclose(binary, [[0.1, 0.9], [0.8, 0.2]])
    multi = class_scores(np.array([[0.0, 0.0, np.log(2.0)]]), "logits")
    assert np.allclose(multi, [[0.25, 0.25, 0.5]])
    best = top_labels(multi, ["a", "b", "c"], top_k=2)[0]
    assert best["label"] == "c" and [r["label"] for r in best["top_k"]] == ["c", "a"]


def test_check_rows_refuses_nan_inf_and_out_of_range_for_every_dtype_and_never_copies_needlessly():
    import numpy as np
    import pytest

    from handlers.preprocessing.processing import RequestError
    from handlers.preprocessing.tensors import TensorSpec, check_rows

    floats = TensorSpec(name="x", dtype="float16", shape=[-1, 2])
    for bad in ([[np.nan, 0]], [[np.inf, 0]], [[0, -np.inf]]):
        with pytest.raises(RequestError, match="NaN or infinite"):
            check_rows(floats, np.array(bad, dtype=np.float16), 8)
    ids = TensorSpec(name="ids", dtype="int64", shape=[-1, 2], range=(0, 9))
    with pytest.raises(RequestError, match=r"values must lie in \[0, 9\]"):
        check_rows(ids, np.array([[3, 10]], dtype=np.int64), 8)
    flags = TensorSpec(name="flags", dtype="bool", shape=[-1, 2], range=(1, 1))
    with pytest.raises(RequestError, match="values must lie"):
        check_rows(flags, np.array([[True, False]]), 8)
    rows = np.zeros((2, 2), dtype=np.float32)
    assert (
        check_rows(TensorSpec(name="x", dtype="float32", shape=[-1, 2]), rows, 8) is rows
    )  # no copy
    assert check_rows(ids, np.array([[1.0, 2.0]]), 8).dtype == np.int64
