"""The `retrain` flow: ingest -> split -> validate -> train -> evaluate -> register."""

from __future__ import annotations

from prefect import flow

from tasks.evaluate import evaluate
from tasks.ingest import ingest, split
from tasks.register import register
from tasks.tracking import end_tracking, start_tracking
from tasks.train import train
from tasks.validate import validate
from textclf.config import PipelineConfig
from textclf.stages import run_dir


@flow(name="retrain", log_prints=True, validate_parameters=True)
def retrain(config: PipelineConfig = PipelineConfig()) -> dict:
    """Retrain the text classifier on the configured data; register it and promote it if it is better."""
    run_id = start_tracking(config)
    out = run_dir(config, run_id)
    try:
        raw = ingest(config, out)
        data = split(config, raw, out)
        validate(config, data, out, run_id)
        trained = train(config, data, out, run_id)
        report = evaluate(config, trained.model_dir, data, out, run_id, trained.val_metrics)
        metrics = {**trained.val_metrics, **report.prefixed()}
        lineage = {"data.fingerprint": data.fingerprint, "mlflow.run_id": run_id}
        decision = register(config, run_id, trained.model_dir, metrics, lineage)
    except BaseException:
        end_tracking(config, run_id, "FAILED")
        raise
    end_tracking(config, run_id)
    return {"mlflow_run_id": run_id, "run_dir": str(out), "metrics": metrics, "registry": decision}


if __name__ == "__main__":
    retrain()
