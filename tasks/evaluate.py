"""evaluate: held-out test metrics and plots, to MLflow and a Prefect markdown summary linking to the run."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT  # reused by a retry of the same flow run

from textclf import stages
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport
from textclf.tracking import TrackedRun


@task(name="evaluate", cache_policy=DEFAULT, persist_result=True)
def evaluate(
    cfg: PipelineConfig, model_dir: str, data: stages.DataRef, out_dir: Path, run: TrackedRun, val_metrics: dict[str, float]
) -> EvalReport:
    report = stages.evaluate(cfg, model_dir, data, out_dir, run)
    val = "\n".join(f"- {k}: {v:.4f}" for k, v in val_metrics.items())
    create_markdown_artifact(
        report.markdown(run.link()) + f"\n\nValidation:\n{val}\n",
        key="evaluation-summary",
        description="held-out test evaluation",
    )
    get_run_logger().info("test metrics %s", report.prefixed())
    return report
