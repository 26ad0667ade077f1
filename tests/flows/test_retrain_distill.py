"""The `retrain` flow with distillation on (the default): student run, report, registry entry with lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # the whole flow: two torchrun launches


@pytest.fixture(scope="module")
def flow_run(prefect_harness, tmp_path_factory, rows_csv):
    from unit.train.test_distill import make_teacher

    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    out = tmp_path_factory.mktemp("flow-distill")
    # A 4-layer tiny model, so the default kind of student (a subset of the teacher's layers) exists.
    base = make_teacher(out / "base")
    cfg = build_config(
        {
            "output_dir": str(out / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "train": {
                "kind": "finetune",
                "model": str(base),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 64,
                "logging_steps": 2,
                "checkpoint_steps": 5,
            },
            "validate": {"max_duplicate_rate": 0.2},
            "augment": {"enabled": False},
            "distill": {
                "student_model": "",
                "student_layers": 2,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "report_latency_texts": 10,
            },
        }
    )
    assert cfg.distill.enabled  # on by default
    return cfg, retrain(cfg)


def test_student_is_registered_with_lineage_to_the_teacher_version(flow_run):
    cfg, summary = flow_run
    client = MlflowClient(cfg.mlflow_uri(), registry_uri=cfg.mlflow_uri())
    student = summary["student"]
    assert student["name"] == f"{cfg.registry.model_name}-student"
    version = client.get_model_version(student["name"], student["version"])
    assert version.tags["distill.teacher_version"] == f"{cfg.registry.model_name}/{summary['registry']['version']}"
    assert json.loads(version.tags["distill.layer_map"]) == [0, 2]
    assert version.tags["data.fingerprint"]
    run = client.get_run(version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == summary["mlflow_run_id"]
    for key in (
        "test_accuracy",
        "teacher_accuracy",
        "student_accuracy",
        "agreement",
        "student_params",
        "student_latency_p95_ms",
        "student_throughput_b32",
        "student_onnx_parity_max_abs_diff",
        "student_onnx_latency_p95_ms",
    ):
        assert key in run.data.metrics, key

    # The ONNX export sits beside the weights, so the registered student ships it.
    def files(path: str) -> set[str]:
        found = set()
        for f in client.list_artifacts(run.info.run_id, path):
            found |= files(f.path) if f.is_dir else {Path(f.path).name}
        return found

    assert {"model.onnx", "model.safetensors", "MLmodel"} <= files("model")
    assert run.data.metrics["student_params"] < run.data.metrics["teacher_params"]
    parent = client.get_run(summary["mlflow_run_id"])
    assert "distill_agreement" in parent.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 1


def test_report_table_artifact_and_files(flow_run):
    from prefect import get_client

    cfg, summary = flow_run
    report = json.loads((Path(summary["run_dir"]) / "distill" / "distill_report.json").read_text())
    assert report["student"]["params"] < report["teacher"]["params"]
    import asyncio

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    keys = {a.key for a in asyncio.run(latest())}
    assert "distillation-report" in keys
