"""The `retrain` flow: ingest -> split -> validate -> augment -> train -> evaluate -> promote (register + gate) ->
distill -> evaluate -> promote the student -> compare the models.

Two entry points, one flow name and one composition: `retrain(config)` takes the whole config (`textclf run`,
Python callers, tests); `retrain_from_form(form)` is what the deployments run: the deployment's config (from the
environment `textclf worker` gives its runs) with the UI form's few choices on top (textclf.form).
"""

from __future__ import annotations

from prefect import State, flow
from prefect.runtime import flow_run
from prefect.states import Completed

from textclf.config import PipelineConfig
from textclf.deployments import FLOW_NAME
from textclf.form import RunForm
from textclf.stages import run_dir
from textclf_flows.augment_fan_out import fan_out_translations
from textclf_tasks.augment import ablation, augment
from textclf_tasks.compare import compare_models
from textclf_tasks.distill import distill, evaluate_student
from textclf_tasks.evaluate import evaluate
from textclf_tasks.form import run_config
from textclf_tasks.ingest import add_drops, ingest, record_lineage, split
from textclf_tasks.monitor import check_policy
from textclf_tasks.notify import notify_failure
from textclf_tasks.preflight import preflight
from textclf_tasks.promote import promote, promote_student
from textclf_tasks.skip import check_unchanged
from textclf_tasks.tracking import end_tracking, fail_tracking, start_tracking
from textclf_tasks.train import train
from textclf_tasks.validate import validate


# log_prints stays off: tasks log through Prefect's logger, and Prefect's print patch would swallow the
# stdout that dill captures from dis.dis() when `datasets` hashes a function (bytecode in the task logs,
# and dill then finds no globals for the fingerprint).
@flow(name=FLOW_NAME, log_prints=False, validate_parameters=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def retrain(config: PipelineConfig = PipelineConfig()) -> dict | State:  # State: a Completed "Skipped" run
    """Retrain the text classifier on the configured data; register it and promote it if it is better."""
    return _pipeline(config)


@flow(name=FLOW_NAME, log_prints=False, validate_parameters=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def retrain_from_form(form: RunForm = RunForm()) -> dict | State:  # type: ignore[valid-type]
    """Retrain with the deployment's settings and this form's choices (data, model, epochs, switches, reason)."""
    return _pipeline(run_config(form))


def _pipeline(config: PipelineConfig) -> dict | State:
    """The composition, inside either flow's run."""
    preflight(config)
    if config.data.inbox:
        add_drops(config)  # new drops become a DVC data version before anything reads the data
    unchanged = check_unchanged(config)
    if unchanged.skip:
        # Same data md5, config and code as the last successful run: a new model would be the same model.
        return Completed(
            name="Skipped",
            message=unchanged.reason,
            data={"skipped": True, "reason": unchanged.reason, "mlflow_run_id": unchanged.previous_run_id},
        )
    if unchanged.ask_policy:
        # Only the data changed: the retrain policy judges the rows new since the champion (monitor.scheduled).
        policy = check_policy(config, config.output_path / "monitor" / str(flow_run.id or "local"))
        if not policy.retrain:
            return Completed(
                name="Skipped",
                message=policy.reason,
                data={"skipped": True, "reason": policy.reason, "monitor_run_id": policy.monitor_run_id},
            )
    run = start_tracking(config, unchanged.key_tags)
    out = run_dir(config, run.run_id)
    student, evaluated, student_decision = None, None, None
    try:
        raw = ingest(config, out)
        data = split(config, raw, out)
        lineage = record_lineage(config, run, data)  # git, DVC md5, digests, flow run
        data = validate(config, data, out, run)  # quarantine mode: the rows that passed
        if config.augment.enabled and config.augment.backtranslate.fan_out == "dask":
            fan_out_translations(config, data)  # chunks over Dask into the cache the augment task reads
        clean, data = data, augment(config, data, out, run)  # only the train split grows
        trained = train(config, data, out, run)
        report = evaluate(config, trained.model_dir, data, out, run, trained.val_metrics)
        if config.augment.enabled and config.augment.ablation:
            trained, report = ablation(config, clean, out, run, trained, report)  # the better one goes on
        metrics = {**trained.val_metrics, **report.prefixed()}
        decision = promote(config, run, trained.model_dir, report, data, out, lineage)
        if config.distill.enabled:  # the student users deploy: its own run, registry name and gate
            student = distill(config, data, out, run, trained.model_dir)
            evaluated = evaluate_student(config, student, data, run)
            student_decision = promote_student(config, student, evaluated, data, lineage, decision)
            end_tracking(student.run)
        # Teacher, student and the champions they were gated against, on the validation split.
        compare_models(config, data, out, run, trained, report, decision, student, evaluated, student_decision)
    except BaseException as error:
        if student is not None:
            fail_tracking(student.run, error)
        fail_tracking(run, error)  # FAILED, with tag failure.reason
        raise
    end_tracking(run)
    return {
        "mlflow_run_id": run.run_id,
        "run_dir": str(out),
        "metrics": metrics,
        "registry": decision.to_dict(),
        "student": student_decision.to_dict() if student_decision else None,
    }


if __name__ == "__main__":
    retrain()
