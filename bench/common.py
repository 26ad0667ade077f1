"""Shared benchmark plumbing: machine facts, result JSON, one-line summaries."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def machine() -> dict:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def comparison(reference: float | None, ours: float, unit: str, higher_is_better: bool, **extra) -> dict:
    """ratio > 1 means ours is better: ours/ref for throughputs and accuracies, ref/ours for times."""
    if reference in (None, 0):
        ratio = None
    else:
        ratio = ours / reference if higher_is_better else reference / ours
    return {"reference": reference, "ours": ours, "unit": unit, "ratio": ratio, **extra}


def write_results(name: str, params: dict, results: dict[str, dict]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "name": name,
        "machine": machine(),
        "params": params,
        "results": results,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_text(json.dumps(payload, indent=2))
    for key, res in results.items():
        ratio = f"{res['ratio']:.3f}" if res.get("ratio") is not None else "n/a"
        print(f"{name}.{key}: reference={res['reference']} ours={res['ours']} {res['unit']} ratio={ratio}")
    return path


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
