"""validate: the data gate; its report goes to MLflow and the Prefect UI whether it passes or not."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT  # reused by a retry of the same flow run

from textclf import stages
from textclf.config import PipelineConfig
from textclf.errors import ValidationFailed
from textclf.tracking import TrackedRun


@task(name="validate", cache_policy=DEFAULT, persist_result=True)
def validate(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run: TrackedRun) -> stages.DataRef:
    """The data to train on: the rows that passed the gate, in `out_dir/validated`."""
    try:
        validated = stages.validate(cfg, data, out_dir, run)
    except ValidationFailed as failed:
        if failed.report is not None:  # the report, above all when the gate fails
            create_markdown_artifact(failed.report.markdown(), key="validation-report", description="data gate")
        raise
    create_markdown_artifact(validated.report.markdown(), key="validation-report", description="data gate")
    get_run_logger().info(
        "validation passed: %d checks, %d row(s) quarantined; training on %s",
        len(validated.report.checks),
        validated.report.quarantined,
        validated.data.path,
    )
    return validated.data
