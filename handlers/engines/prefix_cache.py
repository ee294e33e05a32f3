"""Automatic prefix caching, runtime-neutral: the keys and values of prompt prefixes kept by
blocks of tokens, so a request whose prompt starts like an earlier one's prefills only the
rest (vLLM's automatic prefix caching). A block is found by a hash that chains every token
before it, so equal blocks after different prefixes never mix. The cache is bounded by a byte
budget; the least recently used blocks go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from handlers.engines.kv_cache import KV

BLOCK_TOKENS = 16  # vLLM's default block size


@dataclass
class Lookups:
    """Prompt tokens looked up and found, since the last time they were read (metrics)."""

    queries: int = 0
    hits: int = 0


class PrefixCache:
    def __init__(self, budget_bytes: int, block_tokens: int = BLOCK_TOKENS):
        self.budget, self.block = budget_bytes, block_tokens
        self.blocks: OrderedDict[int, KV] = OrderedDict()  # chained hash -> one block's KV
        self.bytes = 0
        self.lookups = Lookups()

    def hashes(self, prompt: list[int]) -> list[int]:
        """The chained hash of each whole block of the prompt."""
        chained, out = 0, list[int]()
        for start in range(0, len(prompt) - self.block + 1, self.block):
            chained = hash((chained, tuple(prompt[start : start + self.block])))
            out.append(chained)
        return out

    def longest(self, prompt: list[int]) -> tuple[int, KV] | None:
        """The cached KV of the prompt's longest cached prefix of whole blocks, leaving at least
        one token to prefill (its logits give the first token); None when there is none."""
        usable = self.hashes(prompt[:-1])
        found: list[KV] = []
        for chained in usable:
            if chained not in self.blocks:
                break
            self.blocks.move_to_end(chained)
            found.append(self.blocks[chained])
        self.lookups.queries += len(prompt)
        self.lookups.hits += len(found) * self.block
        if not found:
            return None
        layers = [
            (torch.cat([b[i][0] for b in found], dim=2), torch.cat([b[i][1] for b in found], dim=2))
            for i in range(len(found[0]))
        ]
        return len(found) * self.block, layers

    def store(self, prompt: list[int], cache: KV) -> None:
        """Keep the whole blocks of a prefilled prompt (its own cache: [1, heads, length, dim]
        per layer, the prompt's positions last), copied so the batch's memory can go."""
        offset = cache[0][0].shape[2] - len(prompt)  # positions before the prompt's: none
        for number, chained in enumerate(self.hashes(prompt)):
            if chained in self.blocks:
                self.blocks.move_to_end(chained)
                continue
            start = offset + number * self.block
            block = [
                (
                    keys[:, :, start : start + self.block].clone(),
                    values[:, :, start : start + self.block].clone(),
                )
                for keys, values in cache
            ]
            self.blocks[chained] = block
            self.bytes += size_of(block)
        while self.bytes > self.budget and self.blocks:
            _, evicted = self.blocks.popitem(last=False)
            self.bytes -= size_of(evicted)

    def read_lookups(self) -> Lookups:
        lookups, self.lookups = self.lookups, Lookups()
        return lookups


def size_of(block: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in block)
