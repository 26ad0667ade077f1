import sqlite3

import pytest

from textclf.augment.cache import AugmentCache, cache_key


def test_key_depends_on_every_part():
    base = cache_key("text", "bergamot", "m", {"pivot": "pt"})
    assert base == cache_key("text", "bergamot", "m", {"pivot": "pt"})
    others = {
        cache_key("text2", "bergamot", "m", {"pivot": "pt"}),
        cache_key("text", "marian", "m", {"pivot": "pt"}),
        cache_key("text", "bergamot", "m2", {"pivot": "pt"}),
        cache_key("text", "bergamot", "m", {"pivot": "es"}),
    }
    assert base not in others and len(others) == 4


def test_entries_persist_across_instances(tmp_path):
    path = tmp_path / "cache.sqlite"
    with AugmentCache(path) as cache:
        cache.put_many([("a", "A"), ("b", "B")])
    with AugmentCache(path) as cache:
        assert cache.get_many(["a", "b", "c"]) == {"a": "A", "b": "B"}
        assert (cache.hits, cache.misses, len(cache)) == (2, 1, 2)


def test_an_interrupted_batch_leaves_nothing_behind(tmp_path):
    path = tmp_path / "cache.sqlite"
    with AugmentCache(path) as cache:
        cache.put_many([("kept", "K")])

        def batch():
            yield ("half", "H")
            raise KeyboardInterrupt  # the run is stopped while the batch is being written

        with pytest.raises(KeyboardInterrupt):
            cache.put_many(batch())
        cache.put_many([("after", "A")])  # the cache is still usable
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert dict(db.execute("SELECT key, output FROM outputs")) == {"kept": "K", "after": "A"}
