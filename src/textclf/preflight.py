"""Cheap checks before a run starts: the data source and the model exist, the heads of its files decode with
data.encoding and name the configured columns.

The CLI runs them before starting Prefect (a bad path fails in a second, not after start-up) and
the flow runs them first (a run started from the UI fails before any work). Nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from textclf.config import DataConfig, PipelineConfig
from textclf.data.readers import head_columns
from textclf.data.sources import check_source, drop_files, is_saved_hf_dataset
from textclf.errors import DataError
from textclf.modeling import resolve_model
from textclf.train.onnx_export import require_onnx_packages

PREFLIGHT_FILES = 20  # files of a folder whose heads are checked up front (ingest reads them all)


def check_data(data: DataConfig) -> None:
    """The source exists; the heads of its first files decode with data.encoding and name the columns."""
    check_source(data)
    if data.source.startswith(("packaged:", "hf:")):
        return
    path = Path(data.source).expanduser()
    if path.is_dir() and is_saved_hf_dataset(path):
        return  # a saved Hugging Face dataset (or DatasetDict): typed columns, checked when it loads
    wanted = {"data.text_column": data.text_column, "data.label_column": data.label_column}
    if data.group_column:
        wanted["data.group_column"] = data.group_column
    for file in drop_files(path)[:PREFLIGHT_FILES]:
        columns = head_columns(file, data.encoding)
        if columns is None:
            continue
        for key, column in wanted.items():
            if column not in columns:
                raise DataError(
                    f"{file}: column {column!r} ({key}) not found; columns are {columns[:12]}; set {key} to one of them"
                )


def preflight(cfg: PipelineConfig) -> None:
    """Raise a one-line TextclfError for a missing data source, column, model or package a setting needs."""
    check_data(cfg.data)
    resolve_model(cfg.train.model)
    if cfg.distill.enabled and cfg.distill.student_model:
        resolve_model(cfg.distill.student_model)
    if cfg.train.kind == "probe" and cfg.train.probe.backend == "onnx":
        require_onnx_packages("train.probe.backend is 'onnx'", "set train.probe.backend=torch")
    if cfg.distill.enabled and cfg.distill.onnx_export:
        require_onnx_packages()
