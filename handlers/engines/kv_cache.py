"""The key/value caches of the decode loop, runtime-neutral: one sequence's own cache (a list
of per-layer keys and values), and how several are laid out as one batch and taken apart
again: left-padded to the longest, each sequence's positions at the right end of its row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

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
