"""Length-grouped order: a permutation, less padding than random batches, a pure function of (seed, epoch)."""

from __future__ import annotations

import random

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from textclf.train.sampling import SeededLengthGroupedSampler, length_grouped_order, padded_tokens


def lengths_like_reviews(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [min(128, max(4, int(rng.lognormvariate(3.3, 0.45)))) for _ in range(n)]


def test_order_is_a_permutation_that_cuts_padding():
    lengths = lengths_like_reviews()
    order = length_grouped_order(lengths, global_batch=32, seed=1, epoch=0)
    assert sorted(order) == list(range(len(lengths)))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1)).tolist()
    real = sum(lengths)
    assert padded_tokens(order, lengths, 32) < 1.1 * real  # within 10% of no padding at all
    assert padded_tokens(shuffled, lengths, 32) > 1.5 * real  # random batches pad far more


def test_order_depends_on_seed_and_epoch_only():
    lengths = lengths_like_reviews(300)
    first = length_grouped_order(lengths, 16, seed=3, epoch=2)
    torch.manual_seed(999)  # the global RNG must not matter
    torch.rand(10)
    assert length_grouped_order(lengths, 16, seed=3, epoch=2) == first
    assert length_grouped_order(lengths, 16, seed=3, epoch=3) != first
    assert length_grouped_order(lengths, 16, seed=4, epoch=2) != first


def test_sampler_follows_set_epoch_unlike_transformers_sampler():
    """After a resume the global RNG holds the checkpoint's state; only our order survives that."""
    lengths = lengths_like_reviews(200)
    ours = SeededLengthGroupedSampler(lengths, 16, seed=5)
    ours.set_epoch(1)
    before = list(ours)
    theirs = LengthGroupedSampler(16, lengths=lengths)
    torch.manual_seed(5)
    theirs_before = list(theirs)
    torch.manual_seed(5)
    torch.rand(7)  # e.g. dropout draws between epoch start and the checkpoint
    ours.set_epoch(1)
    assert list(ours) == before
    assert list(theirs) != theirs_before


def test_short_last_batch_stays_last_and_batches_are_whole():
    lengths = lengths_like_reviews(100)
    order = length_grouped_order(lengths, 32, seed=0, epoch=0, megabatch_mult=1)
    batches = [order[i : i + 32] for i in range(0, 100, 32)]
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    for batch in batches:  # each batch comes from one sorted megabatch: longest first
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
