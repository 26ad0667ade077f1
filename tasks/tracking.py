"""Open and close the pipeline's MLflow run."""

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import DEFAULT, NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from textclf import stages
from textclf.config import PipelineConfig
from textclf.tracking import TrackedRun


# Cached per flow run (DEFAULT = inputs + task source + flow run id) with a persisted result: a retry of
# the flow run gets the same MLflow run back, so training resumes in the same run folder.
@task(
    name="start-tracking",
    retries=3,
    retry_delay_seconds=exponential_backoff(2),
    retry_jitter_factor=0.5,
    cache_policy=DEFAULT,
    persist_result=True,
)
def start_tracking(cfg: PipelineConfig, extra_tags: dict[str, str] | None = None) -> TrackedRun:
    tags = {
        "prefect.flow_run_id": str(flow_run.id or ""),
        "prefect.flow_run_name": str(flow_run.name or ""),
        "trigger": "prefect",
        **(extra_tags or {}),
    }
    run = stages.start_tracking(cfg, flow_run.name, tags)
    if run.url:
        create_link_artifact(
            run.url, link_text=f"MLflow run {run.run_id}", key="mlflow-run", description="this flow run's MLflow run"
        )
    return run


@task(name="end-tracking", retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5, cache_policy=NO_CACHE)
def end_tracking(run: TrackedRun, status: str = "FINISHED") -> None:
    run.end(status)


@task(name="fail-tracking", retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5, cache_policy=NO_CACHE)
def fail_tracking(run: TrackedRun, error: BaseException) -> None:
    """The run ends FAILED with tag failure.reason (the error's type and first line)."""
    run.fail(error)
