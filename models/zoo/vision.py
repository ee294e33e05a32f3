"""torchvision CNNs as users bring them: the library's own builders, random weights (weights=None:
nothing is downloaded), 3-channel 224x224 inputs with ImageNet normalisation."""

from __future__ import annotations

import torchvision
from torch import nn


def resnet18(classes: int = 10) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=classes)


def mobilenet_v3_small(classes: int = 10) -> nn.Module:
    return torchvision.models.mobilenet_v3_small(weights=None, num_classes=classes)
