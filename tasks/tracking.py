"""Open and close the pipeline's single MLflow run."""

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from textclf import tracking
from textclf.config import PipelineConfig


@task(name="start-tracking", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def start_tracking(cfg: PipelineConfig) -> str:
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or ""),
            "trigger": "prefect"}
    return tracking.start_run(cfg, run_name=flow_run.name, tags=tags)


@task(name="end-tracking", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def end_tracking(cfg: PipelineConfig, run_id: str, status: str = "FINISHED") -> None:
    tracking.end_run(cfg, run_id, status)
