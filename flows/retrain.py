"""The `retrain` flow: ingest -> split -> validate -> train -> evaluate -> promote (register + gate)."""

from __future__ import annotations

from prefect import flow
from prefect.states import Completed

from flows.augment_fan_out import fan_out_translations
from tasks.augment import ablation, augment
from tasks.distill import distill, evaluate_student
from tasks.evaluate import evaluate
from tasks.ingest import add_drops, ingest, record_lineage, split
from tasks.notify import notify_failure
from tasks.preflight import preflight
from tasks.promote import promote
from tasks.skip import check_unchanged
from tasks.tracking import end_tracking, start_tracking
from tasks.train import train
from tasks.validate import validate
from textclf.config import PipelineConfig
from textclf.stages import run_dir, student_config, student_lineage


# log_prints stays off: tasks log through Prefect's logger, and Prefect's print patch would swallow the
# stdout that dill captures from dis.dis() when `datasets` hashes a function (bytecode in the task logs,
# and dill then finds no globals for the fingerprint).
@flow(name="retrain", log_prints=False, validate_parameters=True, on_failure=[notify_failure],
      on_crashed=[notify_failure])
def retrain(config: PipelineConfig = PipelineConfig()) -> dict:
    """Retrain the text classifier on the configured data; register it and promote it if it is better."""
    preflight(config)
    if config.data.inbox:
        add_drops(config)  # new drops become a DVC data version before anything reads the data
    unchanged = check_unchanged(config)
    if unchanged.skip:
        # Same data md5, config and code as the last successful run: a new model would be the same model.
        return Completed(name="Skipped", message=unchanged.reason,
                         data={"skipped": True, "reason": unchanged.reason,
                               "mlflow_run_id": unchanged.previous_run_id})
    run_id = start_tracking(config, unchanged.key_tags)
    out = run_dir(config, run_id)
    student, student_decision = None, None
    try:
        raw = ingest(config, out)
        data = split(config, raw, out)
        lineage = record_lineage(config, run_id, data)  # git, DVC md5, digests, flow run
        data = validate(config, data, out, run_id)  # quarantine mode: the rows that passed
        if config.augment.enabled and config.augment.backtranslate.fan_out == "dask":
            fan_out_translations(config, data)  # chunks over Dask into the cache the augment task reads
        clean, data = data, augment(config, data, out, run_id)  # only the train split grows
        trained = train(config, data, out, run_id)
        report = evaluate(config, trained.model_dir, data, out, run_id, trained.val_metrics)
        if config.augment.enabled and config.augment.ablation:
            trained, report = ablation(config, clean, out, run_id, trained, report)  # the better one goes on
        metrics = {**trained.val_metrics, **report.prefixed()}
        lineage = {**lineage, "data.fingerprint": data.fingerprint, "mlflow.run_id": run_id}
        decision = promote(config, run_id, trained.model_dir, report, data, out, lineage)
        if config.distill.enabled:  # the student users deploy: its own run, registry name and gate
            student = distill(config, data, out, run_id, trained.model_dir)
            student_report = evaluate_student(config, student, data, run_id)
            student_decision = promote(student_config(config), student.mlflow_run_id, student.model_dir,
                                       student_report, data, out / "distill",
                                       {**lineage, **student_lineage(student.plan, decision, config.distill)})
            end_tracking(config, student.mlflow_run_id)
    except BaseException:
        if student is not None:
            end_tracking(config, student.mlflow_run_id, "FAILED")
        end_tracking(config, run_id, "FAILED")
        raise
    end_tracking(config, run_id)
    return {"mlflow_run_id": run_id, "run_dir": str(out), "metrics": metrics, "registry": decision,
            "student": student_decision}


if __name__ == "__main__":
    retrain()
