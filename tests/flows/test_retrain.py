"""The whole `retrain` flow under Prefect's test harness, a real MLflow sqlite store, a tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flow_run(prefect_harness, tmp_path_factory, tiny_model, rows_csv):
    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    out = tmp_path_factory.mktemp("flow")
    tree = {
        "output_dir": str(out / "outputs"),
        "data": {"source": str(rows_csv), "seed": 1},
        "train": {
            "kind": "finetune",
            "model": str(tiny_model),
            "epochs": 2,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "max_length": 64,
            "logging_steps": 2,
            "checkpoint_steps": 5,
        },
        "validate": {"max_duplicate_rate": 0.2},
        "augment": {"enabled": False},
        "distill": {"enabled": False},
    }
    cfg = build_config(tree)
    (out / "cfg.yaml").write_text(yaml.safe_dump(tree))
    return cfg, retrain(cfg), out


def test_one_mlflow_run_with_config_params_curve_and_metrics(flow_run):
    cfg, summary, _ = flow_run
    client = MlflowClient(cfg.mlflow_uri())
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == summary["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2.0" and run.data.params["data.source"] == cfg.data.source
    assert len(run.data.params) >= len(cfg.flat()) - 5
    for key in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"):
        assert 0.0 <= run.data.metrics[key] <= 1.0, key
    curve = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(curve) >= 3 and curve[0].step < curve[-1].step
    assert run.data.tags["prefect.flow_run_id"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "config.yaml"} <= artifacts


def test_model_is_logged_loadable_and_registered_as_champion(flow_run):
    cfg, summary, _ = flow_run
    client = MlflowClient(cfg.mlflow_uri(), registry_uri=cfg.mlflow_uri())
    champion = client.get_model_version_by_alias(cfg.registry.model_name, cfg.registry.champion_alias)
    assert champion.run_id == summary["mlflow_run_id"]
    assert str(summary["registry"]["version"]) == str(champion.version)
    # pyfunc artifacts: model/{MLmodel, pyfunc_model.py (models-from-code)} + model/artifacts/<classifier folder>/
    # {safetensors, tokenizer, config}; no pickle
    (folder,) = [a.path for a in client.list_artifacts(champion.run_id, "model/artifacts") if a.is_dir]
    files = {Path(a.path).name for a in client.list_artifacts(champion.run_id, folder)}
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= files
    top = {Path(a.path).name for a in client.list_artifacts(champion.run_id, "model")}
    assert {"MLmodel", "pyfunc_model.py"} <= top
    assert not [name for name in top | files if name.endswith((".pkl", ".bin"))], top | files


def test_predict_cli_prints_a_label_per_text(flow_run):
    cfg, _, out = flow_run
    texts = ["a moving, beautifully acted film", "tedious and far too long", "fine"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "textclf", "predict", "--config", str(out / "cfg.yaml"), *texts],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(texts)
    for line, text in zip(lines, texts, strict=True):
        label, score, echoed = line.split("\t")
        assert label in {"negative", "positive"} and 0.5 <= float(score) <= 1.0 and echoed == text


def test_the_flow_writes_the_folders_the_dvc_stages_write(flow_run):
    """Prefect and DVC call the same stages: validated/ and augmented/ (a copy: augmentation is off here)
    exist in the run folder as in outputs/dvc, with the augment report saying why nothing was added."""
    from datasets import load_from_disk

    from textclf.augment.report import AugmentReport

    _, summary, _ = flow_run
    run_dir = Path(summary["run_dir"])
    splits, validated, augmented = (load_from_disk(str(run_dir / name)) for name in ("splits", "validated", "augmented"))
    assert {k: list(v["text"]) for k, v in augmented.items()} == {k: list(v["text"]) for k, v in validated.items()}
    assert {k: len(v) for k, v in validated.items()} == {k: len(v) for k, v in splits.items()}
    assert AugmentReport.read(run_dir / "augment").notes == ["augmentation off (augment.enabled=false)"]
