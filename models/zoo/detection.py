"""A torchvision detector as users wrap it: one image `[3, H, W]` in, every detection out.

torchvision's detectors take a list of images and answer a list of dicts; the wrapper takes one
image tensor (no batch axis: `max_batch_size: 0`) and returns boxes `[N, 4]`, scores `[N]` and
labels `[N]`, N depending on the image. Random weights (weights=None, nothing downloaded) score
every class alike, so no box would pass the score threshold: the BatchNorm statistics are
re-estimated on seeded random images, which spreads the scores and makes N vary by image.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

CALIBRATION_IMAGES = 4


class SSDLite(nn.Module):
    def __init__(self, classes: int = 5, size: int = 320, score_threshold: float = 0.5):
        super().__init__()
        self.detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=classes
        )
        self.detector.score_thresh = score_threshold
        self.recalibrate(size)
        self.eval()

    @torch.no_grad()
    def recalibrate(self, size: int) -> None:
        """BatchNorm running statistics from random images, as a cumulative average."""
        for module in self.detector.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        self.detector.train()
        images = torch.rand(CALIBRATION_IMAGES, 3, size, size)
        batch, _ = self.detector.transform(list(images))
        features = list(self.detector.backbone(batch.tensors).values())
        self.detector.head(features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        detections = self.detector([image])
        # scripted detectors answer (losses, detections); traced and eager ones the detections
        found = detections[1][0] if torch.jit.is_scripting() else detections[0]
        return found["boxes"], found["scores"], found["labels"]
