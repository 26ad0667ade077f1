"""compare: the run's teacher, student and their champions side by side on the validation split."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from textclf import stages
from textclf.compare import ModelComparison
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport
from textclf.promotion import PromotionOutcome
from textclf.tracking import TrackedRun
from textclf.train.finetune import TrainResult


@task(name="compare-models", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def compare_models(
    cfg: PipelineConfig,
    data: stages.DataRef,
    out_dir: Path,
    run: TrackedRun,
    trained: TrainResult,
    report: EvalReport,
    decision: PromotionOutcome,
    student: stages.DistillOutcome | None = None,
    evaluated: stages.StudentEvaluation | None = None,
    student_decision: PromotionOutcome | None = None,
) -> ModelComparison:
    comparison = stages.compare_models(cfg, data, out_dir, trained, report, decision, student, evaluated, student_decision, run)
    create_markdown_artifact(comparison.markdown(), key="model-comparison")
    best = comparison.best(cfg.evaluate.promotion_metric)
    get_run_logger().info("best on validation %s: %s (%s)", cfg.evaluate.promotion_metric, best.role, best.kind)
    return comparison
