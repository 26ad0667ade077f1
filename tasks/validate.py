"""validate: the data gate; its report goes to MLflow and the Prefect UI whether it passes or not."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from textclf import stages, tracking
from textclf.config import PipelineConfig
from textclf.data.validate import ValidationReport


@task(name="validate", cache_policy=NO_CACHE)
def validate(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run_id: str) -> ValidationReport:
    report_dir = Path(out_dir) / "validation"
    try:
        report = stages.validate(cfg, data, out_dir)
    finally:
        if report_dir.exists():
            tracking.log_artifacts(cfg, run_id, report_dir, "validation")
            summary = ValidationReport.load(report_dir / "validation.json")
            create_markdown_artifact(summary.markdown(), key="validation-report", description="data gate")
    get_run_logger().info("validation passed: %d checks", len(report.checks))
    return report
