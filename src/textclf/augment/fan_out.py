"""Back-translation in chunks for a fan-out (augment.backtranslate.fan_out=dask).

The augment stage reads translations from its content-addressed cache; a fan-out fills that cache
first: `pending_chunks` names what is missing, workers run `roundtrip_chunk` (backtranslate.py) anywhere,
and `store_translations` writes their (key, output) pairs in the driver, so a remote cluster needs no
access to the cache file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from datasets import load_from_disk

from textclf.augment.backtranslate import backtranslator_for, make_translator
from textclf.augment.cache import AugmentCache, cache_path
from textclf.augment.training_split import backtranslation_sources
from textclf.config import AugmentConfig


def pending_chunks(augment: AugmentConfig, output_dir: Path, data_path: str) -> list[list[str]]:
    """The distinct texts the augment stage will back-translate that the cache lacks, in chunks."""
    texts = list(dict.fromkeys(backtranslation_sources(load_from_disk(data_path), augment)))
    if not texts:
        return []
    translator = make_translator(augment.backtranslate, threads=1, seed=augment.seed)  # its keys
    try:
        runner = backtranslator_for(augment, translator, cache=None)
        keys = [runner.key(t) for t in texts]
    finally:
        if hasattr(translator, "close"):
            translator.close()
    with AugmentCache(cache_path(augment, output_dir)) as cache:
        found = cache.get_many(keys)
    todo = [t for t, k in zip(texts, keys, strict=True) if k not in found]
    size = augment.backtranslate.chunk_size
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def store_translations(augment: AugmentConfig, output_dir: Path, chunks: Iterable[list[tuple[str, str]]]) -> int:
    """Write the chunks' (key, output) pairs into the cache; returns how many."""
    n = 0
    with AugmentCache(cache_path(augment, output_dir)) as cache:
        for pairs in chunks:
            cache.put_many(pairs)
            n += len(pairs)
    return n
