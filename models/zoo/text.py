"""A transformers BERT-style sequence classifier and a sentence embedder built from a small
config (random weights, nothing downloaded), and the WordPiece `tokenizer.json` they read,
trained at build time with the `tokenizers` library on review sentences that ship with the
project (models/data/sentiment)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DATA = Path(__file__).resolve().parents[1] / "data" / "sentiment"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def small_bert(vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int, **extra):
    """A BertConfig of the given size (the feed-forward layer twice as wide as the model)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_positions,
        **extra,
    )


class TinyBert(nn.Module):
    """BertForSequenceClassification with input_ids and attention_mask over a dynamic sequence
    axis."""

    def __init__(
        self,
        vocab_size: int = 2000,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_positions: int = 128,
        classes: int = 2,
    ):
        super().__init__()
        from transformers import BertForSequenceClassification

        config = small_bert(vocab_size, hidden, layers, heads, max_positions, num_labels=classes)
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


class TextEmbedder(nn.Module):
    """A transformers BertModel from the same small config whose sentence embedding is its last
    hidden states averaged over the real tokens (attention_mask): [-1, hidden]."""

    def __init__(
        self,
        vocab_size: int = 2000,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_positions: int = 128,
    ):
        super().__init__()
        from transformers import BertModel

        config = small_bert(vocab_size, hidden, layers, heads, max_positions)
        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        # a row without real tokens (a random golden mask) pools to zeros, not NaN
        return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def tokenizer_assets(vocab_size: int = 2000) -> dict[str, str]:
    """{"tokenizer.json": ...}: lower-casing WordPiece with [CLS] ... [SEP], trained on the
    shipped sentences (deterministic for the same data), and example requests of varied length."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    texts = [
        line.split("\t", 1)[1]
        for path in sorted(DATA.glob("*.tsv"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "\t" in line
    ]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
        ),
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    examples = [
        "A masterpiece, I loved every minute of it.",
        "Terrible service and cold food; never again.",
        "The battery lasts two days, which is more than I expected from such a small phone.",
    ]
    return {
        "tokenizer.json": tokenizer.to_str(),
        **{f"requests/example_{i}.txt": text for i, text in enumerate(examples)},
    }
