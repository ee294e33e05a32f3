"""The key/value caches of the decode loop, runtime-neutral: one sequence's own cache (a list
of per-layer keys and values), and how several are laid out as one batch and taken apart
again: left-padded to the longest, each sequence's positions at the right end of its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Protocol, cast

import torch

if TYPE_CHECKING:
    from transformers import DynamicCache

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, length, dim]


class KVLayer(Protocol):
    """A layer of a DynamicCache as a causal LM's forward fills it: keys and values
    [batch, heads, length, dim]."""

    keys: torch.Tensor
    values: torch.Tensor


def kv_layers(cache: DynamicCache) -> list[KVLayer]:
    """The cache's layers with their keys and values: transformers types a layer as any of its
    kinds, some without them (or None before the first forward); ours always hold them."""
    return cast("list[KVLayer]", cache.layers)


def own_rows(cache: DynamicCache, row: int, length: int) -> KV:
    """One sequence's cache out of a batched one: its row, the last `length` positions
    (the padding before them dropped)."""
    return [
        (layer.keys[row : row + 1, :, -length:], layer.values[row : row + 1, :, -length:])
        for layer in kv_layers(cache)
    ]


def own_span(tensor: torch.Tensor, row: int, cache_end: int, cached: int, new: int) -> torch.Tensor:
    """One row's positions out of a prefill's [rows, heads, padding + cache + padding + new,
    dim]: its `cached` positions ending at `cache_end`, then its `new` last ones."""
    start = tensor.shape[2] - new
    if not cached or cache_end == start:  # one span: a view, no copy
        return tensor[row : row + 1, :, (cache_end - cached if cached else start) :]
    last = tensor[row : row + 1, :, start:]
    return torch.cat([tensor[row : row + 1, :, cache_end - cached : cache_end], last], dim=2)


def left_padded(caches: list[KV], length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sequences' own caches as one batch, each left-padded to `length` positions."""
    if len(caches) == 1 and caches[0][0][0].shape[2] == length:
        return caches[0]  # nothing to pad or join: no copy
    return [
        (
            torch.cat([pad_left(c[layer][0], length) for c in caches]),
            torch.cat([pad_left(c[layer][1], length) for c in caches]),
        )
        for layer in range(len(caches[0]))
    ]


def empty_like(cache: KV) -> KV:
    """A cache of no positions shaped like `cache` (a prompt's first chunk beside others)."""
    return [(keys[:, :, :0], values[:, :, :0]) for keys, values in cache]


def pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """[1, heads, n, dim] -> [1, heads, length, dim] with zeros before (masked out)."""
    missing = length - tensor.shape[2]
    if missing == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, missing, 0))


def forward_rows(
    model: Callable[..., Any], rows: Sequence[tuple[KV | None, list[int]]], keep: int = 1
) -> tuple[torch.Tensor, list[KV]]:
    """One forward over several sequences, each with its own cache (None: none yet) and new
    tokens: each row is [padding][its cache][padding][its new tokens], the caches and the new
    tokens each left-padded to the longest, the padding masked out and every token at its own
    position, so each sequence gets what it would get alone. Returns the logits of the last
    `keep` positions of every row ([rows, keep, vocabulary]; 0: every new position) and each
    sequence's own cache with its new tokens' (padding dropped)."""
    from transformers import DynamicCache

    cached = [0 if cache is None else cache[0][0].shape[2] for cache, _ in rows]
    longest_cache, longest_new = max(cached), max(len(new) for _, new in rows)
    ids = torch.zeros(len(rows), longest_new, dtype=torch.long)
    mask = torch.zeros(len(rows), longest_cache + longest_new, dtype=torch.long)
    positions = torch.zeros(len(rows), longest_new, dtype=torch.long)
    for row, ((_, new), start) in enumerate(zip(rows, cached)):
        ids[row, longest_new - len(new) :] = torch.tensor(new)
        mask[row, longest_cache - start : longest_cache] = 1
        mask[row, longest_cache + longest_new - len(new) :] = 1
        positions[row, longest_new - len(new) :] = torch.arange(start, start + len(new))
    past = None
    if longest_cache:
        like = next(cache for cache, _ in rows if cache is not None)
        own = [cache if cache is not None else empty_like(like) for cache, _ in rows]
        past = DynamicCache(left_padded(own, longest_cache))
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=past,
        use_cache=True,
        logits_to_keep=keep,
    )
    caches = [
        [
            (
                own_span(layer.keys, row, longest_cache, start, len(new)),
                own_span(layer.values, row, longest_cache, start, len(new)),
            )
            for layer in kv_layers(out.cache)
        ]
        for row, ((_, new), start) in enumerate(zip(rows, cached))
    ]
    return out.logits, caches


def cropped(cache: KV, length: int) -> KV:
    """A sequence's own cache cut to its first `length` positions (what a rejected draft's
    tokens added is dropped)."""
    return [(keys[:, :, :length], values[:, :, :length]) for keys, values in cache]
