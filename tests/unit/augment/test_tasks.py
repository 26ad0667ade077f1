"""The augment and ablation tasks inside the real retrain flow (Prefect test harness, MLflow sqlite)."""

import asyncio
from pathlib import Path

import pytest

from textclf.config import build_config
from textclf.tracking import client_for


@pytest.mark.slow
def test_retrain_flow_augments_train_only_and_runs_the_ablation(tiny_config):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from textclf_flows.retrain import retrain

    tree = tiny_config.to_dict()
    tree["augment"] = {"enabled": True, "ablation": True, "multiplier": 1.3, "backtranslate": {"share": 0.2, "max_rows": 6}}
    tree["distill"] = {**tree["distill"], "enabled": False}  # the 2-layer tiny model has no student to distil
    cfg = build_config(tree)
    with prefect_test_harness(server_startup_timeout=120):
        result = retrain(cfg)

        async def artifact_keys():
            async with get_client() as client:
                found = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(any_=["augmentation-report", "augmentation-pairs", "augmentation-ablation"])
                    )
                )
                return {a.key for a in found}

        keys = asyncio.run(artifact_keys())
    assert keys == {"augmentation-report", "augmentation-pairs", "augmentation-ablation"}
    run = client_for(cfg.tracking_target()).get_run(result["mlflow_run_id"])
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["augment.rows_added"] > 0 and "augment.synonym.sentences_per_s" in metrics
    assert {"ablation.noaug.test_accuracy", "ablation.delta.test_accuracy"} <= set(metrics)
    assert tags["augment.ablation.chosen"] in {"augmented", "no-augmentation"}
    run_dir = Path(result["run_dir"])
    assert (run_dir / "augment" / "augment_report.json").is_file()
    assert (run_dir / "ablation-noaug" / "test_metrics.json").is_file()
    artifacts = {a.path for a in client_for(cfg.tracking_target()).list_artifacts(result["mlflow_run_id"], "augment")}
    assert "augment/augment_report.md" in artifacts
