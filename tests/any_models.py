"""Models from elsewhere, for the "any model, any place" tests: a Hugging Face folder as
save_pretrained writes it, and a detector's tail that calls torchvision's NMS op."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from tests.conftest import TINY_LM_CONFIG


def write_pretrained(folder: Path) -> Path:
    """A tiny GPT-2 Hugging Face folder (config.json, model.safetensors) with a tokenizer.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from models.review_gpt import train_tokenizer

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    config = GPT2Config(**TINY_LM_CONFIG, eos_token_id=0, bos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer = train_tokenizer(["the battery lasts all day.", "this film is great."] * 30, 300)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


class NmsScorer(nn.Module):
    """A detector's tail: scores per anchor, kept by torchvision's batched NMS (torchvision::nms
    in the saved graph), zero where suppressed. Fixed shapes out, a batch axis."""

    def __init__(self, anchors: int = 8):
        super().__init__()
        self.anchors = anchors
        self.head = nn.Linear(16, anchors * 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x).view(x.shape[0], self.anchors, 5)
        corner = out[..., :2].sigmoid() * 10
        boxes = torch.cat([corner, corner + out[..., 2:4].sigmoid() * 5 + 1], dim=-1)
        scores = out[..., 4].sigmoid()
        batch = torch.arange(x.shape[0]).unsqueeze(1).expand_as(scores).reshape(-1)
        keep = torchvision.ops.batched_nms(boxes.reshape(-1, 4), scores.reshape(-1), batch, 0.3)
        kept = torch.zeros_like(scores).reshape(-1).index_fill(0, keep, 1.0)
        return scores * kept.view_as(scores)
