"""distill: a smaller student from the teacher, in its own MLflow run (a child of the pipeline's run)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from textclf import stages, tracking
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport


@task(name="distill", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def distill(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, parent_run_id: str,
            teacher_dir: str) -> stages.DistillOutcome:
    # A retry reuses the same folder: cached teacher logits, training resumes from its last checkpoint.
    run_id = tracking.start_run(stages.student_config(cfg), run_name="distill",
                                tags={"mlflow.parentRunId": parent_run_id, "textclf.stage": "distill"})
    try:
        outcome = stages.distill(cfg, data, Path(out_dir) / "distill", teacher_dir, mlflow_run_id=run_id,
                                 log_line=get_run_logger().info)
    except BaseException:
        tracking.end_run(cfg, run_id, "FAILED")
        raise
    outcome.mlflow_run_id = run_id
    return outcome


@task(name="evaluate-student", cache_policy=NO_CACHE)
def evaluate_student(cfg: PipelineConfig, student: stages.DistillOutcome, data: stages.DataRef,
                     parent_run_id: str) -> EvalReport:
    """The student's test evaluation (for its gate) and teacher vs student side by side: MLflow + a table."""
    out = Path(student.model_dir).parent
    evaluation = stages.evaluate(cfg, student.model_dir, data, out)
    report = stages.distill_report(cfg, student.plan["teacher_dir"], student.model_dir, data, out)
    metrics = report.metrics()
    tracking.log_metrics(cfg, student.mlflow_run_id, {**evaluation.prefixed(), **metrics})
    tracking.log_metrics(cfg, parent_run_id, {f"distill_{k}": v for k, v in metrics.items()})
    tracking.log_artifacts(cfg, student.mlflow_run_id, out / "distill_report.json")
    onnx = "; student (onnx): model.onnx beside the student's weights, run by onnxruntime" if report.onnx else ""
    create_table_artifact(report.rows(), key="distillation-report",
                          description=f"teacher vs student on {report.n_test} test texts (CPU timings){onnx}")
    get_run_logger().info("distillation: %s", {k: round(v, 4) for k, v in metrics.items()})
    return evaluation
