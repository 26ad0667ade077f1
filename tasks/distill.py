"""distill: a smaller student from the teacher, in its own MLflow run (a child of the pipeline's run)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from textclf import stages
from textclf.config import PipelineConfig
from textclf.tracking import TrackedRun


@task(name="distill", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def distill(
    cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, parent: TrackedRun, teacher_dir: str
) -> stages.DistillOutcome:
    # A retry reuses the same folder: cached teacher logits, training resumes from its last checkpoint.
    return stages.distill(cfg, data, Path(out_dir) / "distill", teacher_dir, parent, log_line=get_run_logger().info)


@task(name="evaluate-student", cache_policy=NO_CACHE)
def evaluate_student(
    cfg: PipelineConfig, student: stages.DistillOutcome, data: stages.DataRef, parent: TrackedRun
) -> stages.StudentEvaluation:
    """The student's test evaluation (for its gate) and teacher vs student side by side: MLflow + a table."""
    evaluated = stages.evaluate_student(cfg, student, data, parent)
    report = evaluated.comparison
    onnx = "; student (onnx): model.onnx beside the student's weights, run by onnxruntime" if report.onnx else ""
    create_table_artifact(
        report.rows(),
        key="distillation-report",
        description=f"teacher vs student on {report.n_test} test texts (CPU timings){onnx}",
    )
    get_run_logger().info("distillation: %s", {k: round(v, 4) for k, v in report.metrics().items()})
    return evaluated
