"""monitor, check-policy, start-retrain: judging new data with the champion and acting on the retrain policy."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from textclf import stages
from textclf.config import PipelineConfig
from textclf.deployments import FLOW_NAME, MANUAL_DEPLOYMENT
from textclf.form import form_of
from textclf.monitor.history import ARTIFACT_PATH
from textclf_tasks.skip import transient


def _run_tags() -> dict[str, str]:
    return {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)} if flow_run.id else {}


def _publish(monitored: stages.Monitored) -> None:
    """The result where the Prefect UI shows it: the decision and scores, and a link to the HTML report in MLflow."""
    if monitored.result is None or monitored.run is None:
        create_markdown_artifact(f"## Monitoring: nothing to judge\n\n{monitored.nothing}\n", key="monitor-report")
        return
    url = monitored.run.url
    if url:
        create_link_artifact(
            f"{url}/artifacts/{ARTIFACT_PATH}/report.html",
            link_text="monitoring report (HTML, MLflow)",
            key="monitor-report-link",
        )
    where = (
        f"MLflow run `{monitored.run.run_id}` (experiment id {monitored.run.experiment_id}), report `{ARTIFACT_PATH}/report.html`"
    )
    create_markdown_artifact(
        monitored.result.markdown() + f"\n\n{where}; local copy `{monitored.folder}/report.html`\n", key="monitor-report"
    )


@task(name="monitor", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
def monitor(cfg: PipelineConfig, drop: str | None, out_dir: Path) -> stages.Monitored:
    monitored = stages.monitor(cfg, drop, out_dir, _run_tags(), log_line=get_run_logger().info)
    _publish(monitored)
    return monitored


@task(name="check-policy", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
def check_policy(cfg: PipelineConfig, out_dir: Path) -> stages.PolicyCheck:
    """The scheduled deployment's question before retraining on changed data: does the policy say so?"""
    check = stages.policy_check(cfg, out_dir, _run_tags(), log_line=get_run_logger().info)
    get_run_logger().info(check.reason)
    return check


@task(name="start-retrain", cache_policy=NO_CACHE)
def start_retrain(cfg: PipelineConfig, reason: str) -> str:
    """A retrain/manual run with the deployment's config and `reason`, queued for the worker; its flow run id."""
    form = {**form_of(cfg), "reason": reason}
    # Called from sync code: a FlowRun, not a coroutine. timeout=0: queued, not waited for (the worker runs it next).
    started: Any = run_deployment(f"{FLOW_NAME}/{MANUAL_DEPLOYMENT}", parameters={"form": form}, timeout=0)
    get_run_logger().info("started %s/%s: flow run %s (%s)", FLOW_NAME, MANUAL_DEPLOYMENT, started.name, started.id)
    return str(started.id)
