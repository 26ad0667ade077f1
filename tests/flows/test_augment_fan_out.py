"""Back-translation fanned out over a real local Dask cluster (2 worker processes) equals the sequential run."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_dask_fan_out_fills_the_cache_with_the_sequential_translations(prefect_harness, splits_dir, tmp_path):
    from datasets import load_from_disk

    from textclf.augment.backtranslate import BergamotTranslator, backtranslator_for
    from textclf.augment.cache import AugmentCache, cache_path
    from textclf.augment.training_split import backtranslation_sources
    from textclf.config import build_config
    from textclf.stages import DataRef
    from textclf_flows.augment_fan_out import fan_out_translations

    cfg = build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "augment": {
                "enabled": True,
                "multiplier": 1.1,
                "synonyms": {"enabled": False},
                "backtranslate": {"max_rows": 10, "chunk_size": 3, "fan_out": "dask", "dask_workers": 2},
            },
        }
    )
    splits = load_from_disk(splits_dir)
    data = DataRef(splits_dir, "fingerprint", {k: len(v) for k, v in splits.items()}, splits["train"].features["label"].names)
    texts = list(dict.fromkeys(backtranslation_sources(splits, cfg.augment)))
    assert len(texts) >= 7  # at least 3 chunks of 3 for 2 workers

    stored = fan_out_translations(cfg, data)

    sequential = backtranslator_for(cfg.augment, BergamotTranslator(threads=1), cache=None)
    expected = sequential.roundtrip(texts)
    keys = [sequential.key(t) for t in texts]
    with AugmentCache(cache_path(cfg.augment, cfg.output_path)) as cache:
        found = cache.get_many(keys)
    assert stored == sum(1 for e in expected if e) > 0
    assert [found.get(k) for k in keys] == expected
    assert fan_out_translations(cfg, data) == 0  # a re-run finds everything cached
