"""The `retrain` flow with the frozen-encoder probe as teacher (train.kind=probe, the default kind): the teacher is
registered and gated like any model, the student learns from its logits, a second run encodes no text again, and
the comparison scores both runs' models with the champions they were gated against."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # two whole flow runs


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tmp_path_factory, tiny_model, rows_csv):
    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    out = tmp_path_factory.mktemp("flow-probe")
    cfg = build_config(
        {
            "output_dir": str(out / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "train": {"model": str(tiny_model), "max_length": 64, "probe": {"backend": "torch", "c_grid": [0.01, 0.1]}},
            "validate": {"max_duplicate_rate": 0.2},
            "augment": {"enabled": False},
            "distill": {
                "student_model": str(tiny_model),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "report_latency_texts": 10,
                "onnx_export": False,
            },
            "evaluate": {"latency_samples": 5, "throughput_texts": 32},
        }
    )
    assert cfg.train.kind == "probe" and cfg.distill.enabled  # the defaults
    return cfg, retrain(cfg), retrain(cfg)


def test_the_probe_teacher_is_registered_and_gated_and_the_student_names_it(two_runs):
    cfg, first, _ = two_runs
    client = MlflowClient(cfg.mlflow_uri(), registry_uri=cfg.mlflow_uri())
    teacher = client.get_model_version(cfg.registry.model_name, first["registry"]["version"])
    run = client.get_run(teacher.run_id)
    assert run.data.params["train.kind"] == "probe"
    assert run.data.metrics["probe_chosen_c"] in (0.01, 0.1)
    assert first["registry"]["promoted"]
    card = mlflow.artifacts.download_artifacts(artifact_uri=first["registry"]["model_card"], tracking_uri=cfg.mlflow_uri())
    assert "| `train.kind` | probe |" in Path(card).read_text()
    student = client.get_model_version(first["student"]["name"], first["student"]["version"])
    assert student.tags["distill.teacher_version"] == f"{cfg.registry.model_name}/{first['registry']['version']}"
    plan = json.loads((Path(first["run_dir"]) / "distill" / "distill_plan.json").read_text())
    logits_meta = json.loads(Path(plan["teacher_logits"]).with_suffix(".json").read_text())
    assert logits_meta["computed_by"] == "the teacher's head on its cached encoder vectors"


def test_a_second_run_encodes_nothing_again_and_compares_with_both_champions(two_runs):
    cfg, first, second = two_runs
    client = MlflowClient(cfg.mlflow_uri(), registry_uri=cfg.mlflow_uri())
    metrics = client.get_run(second["mlflow_run_id"]).data.metrics
    assert metrics["probe_encoded_texts"] == 0 and metrics["probe_cached_texts"] > 0

    rows = json.loads((Path(second["run_dir"]) / "comparison" / "comparison.json").read_text())["rows"]
    assert [r["role"] for r in rows] == [
        "teacher",
        "student",
        f"champion of {cfg.registry.model_name}",
        f"champion of {cfg.registry.model_name}-student",
    ]
    assert rows[2]["model"] == f"{cfg.registry.model_name}/{first['registry']['version']}"
    assert "frozen + logistic head" in rows[0]["kind"] and "frozen + logistic head" in rows[2]["kind"]
    # The champion is the first run's teacher, scored now on the same validation rows: its accuracy then.
    first_teacher = client.get_run(first["mlflow_run_id"]).data.metrics
    assert rows[2]["val_accuracy"] == pytest.approx(first_teacher["val_accuracy"], abs=1e-6)
    assert rows[1]["throughput_b32"] > 0 and rows[0]["test_accuracy"] is not None
    first_rows = json.loads((Path(first["run_dir"]) / "comparison" / "comparison.json").read_text())["rows"]
    assert [r["role"] for r in first_rows] == ["teacher", "student"]  # no champion before the first run
    assert "compare.teacher.val_accuracy" in metrics

    from prefect import get_client

    async def latest():
        async with get_client() as prefect:
            return await prefect.read_latest_artifacts()

    assert "model-comparison" in {a.key for a in asyncio.run(latest())}
