"""validate: the data gate; its report goes to MLflow and the Prefect UI whether it passes or not."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT  # reused by a retry of the same flow run

from textclf import stages, tracking
from textclf.config import PipelineConfig
from textclf.data.validate import ValidationReport


@task(name="validate", cache_policy=DEFAULT, persist_result=True)
def validate(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run_id: str) -> stages.DataRef:
    """The data to train on: `data` itself, or its quarantined copy (failing rows dropped)."""
    report_dir = Path(out_dir) / "validation"
    try:
        kept, report = stages.validate(cfg, data, out_dir)
    finally:
        # Data Docs, validation.json and quarantine.csv, also (above all) when the gate fails.
        if (report_dir / "validation.json").exists():
            tracking.log_artifacts(cfg, run_id, report_dir, "validation")
            summary = ValidationReport.load(report_dir / "validation.json")
            create_markdown_artifact(summary.markdown(), key="validation-report", description="data gate")
    get_run_logger().info("validation passed: %d checks, %d row(s) quarantined; training on %s",
                          len(report.checks), report.quarantined, kept.path)
    return kept
