"""Cheap checks before a run starts: the data source and the model exist, the columns are there.

The CLI runs them before starting Prefect (a bad path fails in a second, not after start-up) and
the flow runs them first (a run started from the UI fails before any work). Nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from textclf.config import PACKAGED_DATA, DataConfig, PipelineConfig
from textclf.data.sources import check_source
from textclf.errors import DataError
from textclf.modeling import resolve_model


def _header(path: Path) -> list[str] | None:
    """Column names of one data file, reading as little as possible; None if unknown."""
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".tsv"}:
            return list(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0, encoding="utf-8").columns)
        if suffix == ".parquet":
            return list(pq.read_schema(path).names)
        if suffix in {".jsonl", ".json"}:
            with path.open(encoding="utf-8") as fh:
                first = fh.readline()
            return list(json.loads(first).keys()) if first.strip() else None
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError):
        return None  # the reader gives the precise error (row, byte) during ingest
    return None


def check_data(data: DataConfig) -> None:
    check_source(data)
    if data.source == PACKAGED_DATA or data.source.startswith("hf:"):
        return
    path = Path(data.source).expanduser()
    if not path.is_file():
        return
    columns = _header(path)
    if columns is None:
        return
    wanted = {"data.text_column": data.text_column, "data.label_column": data.label_column}
    if data.group_column:
        wanted["data.group_column"] = data.group_column
    for key, column in wanted.items():
        if column not in columns:
            raise DataError(f"{path}: column {column!r} ({key}) not found; columns are {columns[:12]}; set {key} to one of them")


def preflight(cfg: PipelineConfig) -> None:
    """Raise a one-line TextclfError for a missing data source, column or model."""
    check_data(cfg.data)
    resolve_model(cfg.train.model)
