"""evaluate: held-out test metrics, to MLflow and a Prefect markdown summary."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from textclf import stages, tracking
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: PipelineConfig, model_dir: str, data: stages.DataRef, out_dir: Path, run_id: str,
             val_metrics: dict[str, float]) -> EvalReport:
    report = stages.evaluate(cfg, model_dir, data, out_dir)
    tracking.log_metrics(cfg, run_id, report.prefixed())
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in {**val_metrics, **report.prefixed()}.items())
    create_markdown_artifact(f"## Evaluation (MLflow run `{run_id}`)\n\n| metric | value |\n|---|---|\n{rows}",
                             key="evaluation-summary")
    get_run_logger().info("test metrics %s", report.prefixed())
    return report
