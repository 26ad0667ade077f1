"""Data-gate throughput and memory: the GX suites on 100k and 1M synthetic rows.

Each size is generated once (3 classes, review-like lengths, an 80/10/10 split) and saved with
`save_to_disk`; a fresh child process then loads it and runs the gate, as `stages.validate` does,
so its peak RSS is the gate's own (plus the imports), not the generator's. There is no reference
implementation, so `reference` is null. Goal from the issue: 1M rows < 60 s, peak RSS < 3 GB.

    flock /tmp/textclf-cpu.lock .venv/bin/python bench/validate.py [--sizes 100000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import comparison, peak_rss_mb, write_results  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
CLASS_SHARES = [0.45, 0.15, 0.40]


def make_splits(n: int, seed: int = 0):
    """`n` distinct texts of 2..~200 words (median ~20 words, ~115 chars), labelled, split 80/10/10."""
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:x}" + "abcdefgh"[: i % 8] for i in range(20_000)], dtype=object)
    lengths = np.clip(rng.lognormal(mean=3.0, sigma=0.6, size=n).astype(int), 2, 200)
    words = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    texts = [" ".join(words[end - k : end]) for end, k in zip(ends, lengths, strict=True)]
    labels = rng.choice(len(LABELS), size=n, p=CLASS_SHARES)
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})
    data = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    order = rng.permutation(n)
    n_val, n_test = n // 10, n // 10
    return DatasetDict(
        train=data.select(np.sort(order[n_val + n_test :])),
        validation=data.select(np.sort(order[:n_val])),
        test=data.select(np.sort(order[n_val : n_val + n_test])),
    )


def child(path: str, out: str) -> None:
    """Load the saved splits and run the gate; print seconds, peak RSS and the outcome as JSON."""
    start = time.perf_counter()
    from datasets import load_from_disk

    from textclf.config import ValidateConfig
    from textclf.data.validate import run_gate

    imported = time.perf_counter()
    report, _ = run_gate(load_from_disk(path), ValidateConfig(), Path(out))
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": done - imported,
                "import_seconds": imported - start,
                "peak_rss_mb": peak_rss_mb(),
                "passed": report.passed,
                "checks": len(report.checks),
                "failures": [c.check for c in report.failures],
            }
        )
    )


def measure(path: Path, repeats: int) -> dict:
    runs = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--out", out],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"gate run failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  run {i + 1}: {runs[-1]['seconds']:.1f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    if not all(r["passed"] for r in runs):
        raise RuntimeError(f"the clean synthetic data did not pass: {runs[-1]['failures']}")
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "import_seconds": statistics.median(r["import_seconds"] for r in runs),
        "checks": runs[-1]["checks"],
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.out)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"rows_{n}"
            make_splits(n).save_to_disk(str(path))
            print(f"rows={n}: data saved", flush=True)
            got = measure(path, args.repeats)
            key = f"rows_{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"rows_{n // 1000}k"
            results[key] = comparison(
                None,
                round(got["seconds"], 2),
                "s",
                higher_is_better=False,
                peak_rss_mb=round(got["peak_rss_mb"]),
                rows=n,
                rows_per_s=round(n / got["seconds"]),
                import_s=round(got["import_seconds"], 1),
                checks=got["checks"],
                repeats=got["repeats"],
            )
    write_results(
        "validate",
        {
            "sizes": args.sizes,
            "repeats": args.repeats,
            "labels": LABELS,
            "class_shares": CLASS_SHARES,
            "split": "80/10/10",
            "goal": "1M rows < 60 s, peak RSS < 3 GB",
        },
        results,
    )
    for key, res in results.items():
        print(f"validate.{key}: {res['ours']} s, peak RSS {res['peak_rss_mb']} MB, {res['rows_per_s']} rows/s")


if __name__ == "__main__":
    main()
