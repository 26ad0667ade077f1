"""The `monitor` flow: judge a drop with the champion (input drift, prediction drift, decay), record the result, and
start a retrain when the policy (monitor.*) says so; otherwise finish as "Skipped" with the measured scores.

`monitor(config, drop)` takes the whole config (`textclf monitor`, Python callers, tests); `monitor_from_event(drop)`
is what the monitor/on-new-data deployment runs when `textclf data add` or a file landing in data.inbox sends an
event (the deployment's config, from the environment `textclf worker` gives its runs). Only a deployment's run
starts a retrain (a retrain/manual run on the worker, with the decision as its reason); a CLI run reports.
"""

from __future__ import annotations

from prefect import State, flow
from prefect.runtime import flow_run
from prefect.states import Completed

from textclf.config import PipelineConfig
from textclf.deployments import MONITOR_FLOW
from textclf.form import deployment_config
from textclf_tasks.monitor import monitor as monitor_task
from textclf_tasks.monitor import start_retrain
from textclf_tasks.notify import notify_failure


@flow(name=MONITOR_FLOW, log_prints=False, validate_parameters=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def monitor(config: PipelineConfig = PipelineConfig(), drop: str | None = None, start_retrain_run: bool = False) -> dict | State:
    """Judge `drop` (a file or folder; empty: the configured data's rows new since the champion) with the champion."""
    return _monitor(config, drop, start_retrain_run)


@flow(name=MONITOR_FLOW, log_prints=False, validate_parameters=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def monitor_from_event(drop: str = "", event: str = "") -> dict | State:
    """Judge the drop a `textclf.data.added` or `textclf.inbox.file` event names; retrain if the policy says so."""
    return _monitor(deployment_config(), drop or None, True)


def _monitor(config: PipelineConfig, drop: str | None, start_retrain_run: bool) -> dict | State:
    out = config.output_path / "monitor" / str(flow_run.id or "local")
    monitored = monitor_task(config, drop, out)
    if monitored.result is None or monitored.run is None:  # fewer new rows than monitor.min_rows
        return Completed(
            name="Skipped", message=monitored.nothing, data={"retrain": False, "skipped": True, "reason": monitored.nothing}
        )
    decision = monitored.result.decision
    summary = {
        "retrain": decision.retrain,
        "reason": decision.reason,
        "findings": decision.findings,
        "scores": monitored.result.scores(),
        "champion": monitored.result.model,
        "mlflow_run_id": monitored.run.run_id,
        "report": str(monitored.folder / "report.html"),
        "retrain_reason": monitored.retrain_reason(),
        "retrain_flow_run_id": None,
    }
    if not decision.retrain:
        return Completed(name="Skipped", message=decision.reason, data={**summary, "skipped": True})
    if start_retrain_run:
        summary["retrain_flow_run_id"] = start_retrain(config, summary["retrain_reason"])
    return summary
