"""digits_cnn: handwritten digits (scikit-learn's bundled 8x8 set), served as 28x28 images."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from handlers.preprocessing.processing import pil_to_array
from scripts.pipeline.training_data import TrainingData


class DigitsCNN(nn.Module):
    def __init__(self, channels: int = 32, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(channels * 13 * 13, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image).flatten(1))


def digit_image(pixels_8x8: np.ndarray) -> Image.Image:
    """The 0..16 intensities of the bundled set as an 8-bit grayscale image (white on black)."""
    return Image.fromarray((pixels_8x8 * (255.0 / 16.0)).round().astype(np.uint8), mode="L")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_data(seed: int, preprocess) -> TrainingData:
    """`preprocess` is the spec's image pre-processing: train on exactly what the servers apply."""
    digits = load_digits()
    p = preprocess
    x = np.stack(
        [
            pil_to_array(digit_image(img), p.height, p.width, p.grayscale, p.mean, p.std)
            for img in digits.images
        ]
    )
    idx_train, idx_test = train_test_split(
        np.arange(len(x)), test_size=0.2, random_state=seed, stratify=digits.target
    )
    requests = {
        f"digit_{digits.target[i]}.png": png_bytes(digit_image(digits.images[i]))
        for i in idx_test[:3]
    }
    return TrainingData(
        x_train=x[idx_train],
        y_train=digits.target[idx_train].astype(np.int64),
        x_test=x[idx_test],
        y_test=digits.target[idx_test].astype(np.int64),
        requests=requests,
    )
