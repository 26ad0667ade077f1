"""Content-addressed on-disk cache: (source text, backend, model, settings) -> augmented text.

SQLite in WAL mode: each batch is written in one transaction, so an interrupted run leaves either the
whole batch or none of it, never a torn entry, and the next run recomputes only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from textclf.config import AugmentConfig

SCHEMA = "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, output TEXT NOT NULL)"


def cache_path(augment: AugmentConfig, output_dir: Path) -> Path:
    """The cache file of the augment stage (`augment.cache_dir`, else under `output_dir`); a fan-out fills the same."""
    folder = Path(augment.cache_dir) if augment.cache_dir else Path(output_dir) / "cache" / "augment"
    return folder / "outputs.sqlite"


def cache_key(text: str, backend: str, model: str, settings: dict) -> str:
    payload = json.dumps([text, backend, model, settings], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AugmentCache:
    """A file-backed key -> text map; safe to share between runs and threads of one process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, output FROM outputs WHERE key IN ({marks})", chunk))
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        rows = list(items)
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO outputs (key, output) VALUES (?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AugmentCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
