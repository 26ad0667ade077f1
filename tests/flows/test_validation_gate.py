"""A corrupted drop stops the `retrain` flow at the data gate: nothing is trained or registered."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from textclf.errors import ValidationFailed


def test_corrupted_csv_stops_the_flow_before_training(prefect_harness, tmp_path, tiny_model, rows_csv):
    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    frame = pd.read_csv(rows_csv)
    frame.loc[frame.index[:25], "text"] = "   "  # 25 whitespace-only texts of 200
    corrupted = tmp_path / "corrupted.csv"
    frame.to_csv(corrupted, index=False)
    cfg = build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "data": {"source": str(corrupted), "seed": 1},
            "train": {"kind": "finetune", "model": str(tiny_model), "epochs": 1, "batch_size": 16, "max_length": 64},
            "validate": {"max_duplicate_rate": 0.2},
        }
    )

    with pytest.raises(ValidationFailed, match=r"text_not_empty .* rows fail"):
        retrain(cfg)

    client = MlflowClient(cfg.mlflow_uri(), registry_uri=cfg.mlflow_uri())
    assert client.search_registered_models() == [] and client.search_model_versions() == []
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "validation")}
    assert {"validation/validation.json", "validation/data_docs"} <= logged
    run_dir = cfg.output_path / "runs" / run.info.run_id
    assert (run_dir / "validation" / "data_docs" / "index.html").is_file()
    assert not (run_dir / "model").exists() and not list(run_dir.rglob("model.safetensors"))
