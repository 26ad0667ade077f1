"""Length-grouped batch order that is the same on every rank and after a resume.

Transformers' `LengthGroupedSampler` shuffles with the global torch RNG at the moment the
epoch starts. After a resume that RNG holds the checkpoint's state, not the epoch-start
state, so a resumed epoch >= 1 sees a different order than the uninterrupted run (examples
repeated, others skipped). Here the order is a pure function of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def length_grouped_order(
    lengths: Sequence[int], global_batch: int, seed: int, epoch: int, megabatch_mult: int | None = None
) -> list[int]:
    """Indices whose consecutive `global_batch` slices hold texts of similar length.

    Shuffle, cut into megabatches of `megabatch_mult * global_batch`, sort each by length
    (longest first), then shuffle the order of whole global batches so an epoch does not run
    long-to-short. `global_batch` = per-device batch x world size x accumulation steps: DDP
    shards consecutive per-device slices over ranks, so N ranks see the same examples per
    optimizer step as one process with an N times larger batch.
    """
    n = len(lengths)
    if megabatch_mult is None:
        # 50 like transformers, without its "at least 4 megabatches" cap: whole batches are
        # shuffled below, so sorting a large span costs no ordering bias and saves padding.
        megabatch_mult = 50
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    size = megabatch_mult * global_batch
    ordered: list[int] = []
    for start in range(0, n, size):
        ordered += sorted(perm[start : start + size], key=lambda i: -lengths[i])
    batches = [ordered[i : i + global_batch] for i in range(0, n, global_batch)]
    # Keep a short last batch last: moving it elsewhere would split other ranks' batches.
    full, tail = (batches[:-1], batches[-1:]) if len(batches[-1]) < global_batch else (batches, [])
    shuffled = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()] + tail
    return [i for batch in shuffled for i in batch]


class SeededLengthGroupedSampler(Sampler[int]):
    """`length_grouped_order` as a sampler; the Trainer calls `set_epoch` before each epoch."""

    def __init__(self, lengths: Sequence[int], global_batch: int, seed: int):
        self.lengths = list(lengths)
        self.global_batch = global_batch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_order(self.lengths, self.global_batch, self.seed, self.epoch))


def padded_tokens(order: Sequence[int], lengths: Sequence[int], batch: int) -> int:
    """Tokens a dynamic-padding collator feeds the model for batches of `batch` in `order`."""
    return sum(len(order[i : i + batch]) * max(lengths[j] for j in order[i : i + batch]) for i in range(0, len(order), batch))
