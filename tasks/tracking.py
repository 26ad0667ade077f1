"""Open and close the pipeline's single MLflow run."""

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import DEFAULT, NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from textclf import tracking, ui_links
from textclf.config import PipelineConfig


# Cached per flow run (DEFAULT = inputs + task source + flow run id) with a persisted result: a retry of
# the flow run gets the same MLflow run id back, so training resumes in the same run folder.
@task(name="start-tracking", retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
      cache_policy=DEFAULT, persist_result=True)
def start_tracking(cfg: PipelineConfig, extra_tags: dict[str, str] | None = None) -> str:
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or ""),
            "trigger": "prefect", **(extra_tags or {})}
    run_id = tracking.start_run(cfg, run_name=flow_run.name, tags=tags)
    experiment_id = tracking.client_for(cfg).get_run(run_id).info.experiment_id
    url = ui_links.run_url(cfg, experiment_id, run_id)
    if url:
        create_link_artifact(url, link_text=f"MLflow run {run_id}", key="mlflow-run",
                             description="this flow run's MLflow run")
    return run_id


@task(name="end-tracking", retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
      cache_policy=NO_CACHE)
def end_tracking(cfg: PipelineConfig, run_id: str, status: str = "FINISHED") -> None:
    tracking.end_run(cfg, run_id, status)
