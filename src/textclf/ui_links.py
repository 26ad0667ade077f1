"""Addresses of MLflow UI pages for a run and a registered model version (http tracking servers only)."""

from __future__ import annotations

from textclf.config import PipelineConfig


def mlflow_ui_base(cfg: PipelineConfig) -> str | None:
    uri = cfg.mlflow_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def run_url(cfg: PipelineConfig, experiment_id: str, run_id: str) -> str | None:
    base = mlflow_ui_base(cfg)
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def model_version_url(cfg: PipelineConfig, name: str, version: str) -> str | None:
    base = mlflow_ui_base(cfg)
    return f"{base}/#/models/{name}/versions/{version}" if base else None
