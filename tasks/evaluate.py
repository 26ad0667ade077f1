"""evaluate: held-out test metrics and plots, to MLflow and a Prefect markdown summary linking to the run."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT  # reused by a retry of the same flow run

from textclf import registry, stages, tracking
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport


@task(name="evaluate", cache_policy=DEFAULT, persist_result=True)
def evaluate(cfg: PipelineConfig, model_dir: str, data: stages.DataRef, out_dir: Path, run_id: str,
             val_metrics: dict[str, float]) -> EvalReport:
    report = stages.evaluate(cfg, model_dir, data, out_dir)
    tracking.log_metrics(cfg, run_id, report.prefixed())
    tracking.log_artifacts(cfg, run_id, Path(out_dir) / "evaluation", "evaluation")
    val = "\n".join(f"- {k}: {v:.4f}" for k, v in val_metrics.items())
    create_markdown_artifact(report.markdown(registry.mlflow_run_link(cfg, run_id)) + f"\n\nValidation:\n{val}\n",
                             key="evaluation-summary", description="held-out test evaluation")
    get_run_logger().info("test metrics %s", report.prefixed())
    return report
