"""Deployments: `retrain/scheduled` (cron), `retrain/manual` (runs from the UI form) and `monitor/on-new-data` (started
by a drop event: `textclf data add`, a file landing in data.inbox).

The two retrain deployments run `retrain_from_form`: their one parameter is the short run form (textclf.form: data source, model,
epochs, learning rate, augmentation and distillation switches, reason), filled with the worker's config, so the
Prefect UI shows those fields with their descriptions and bounds, and the server refuses a run whose form breaks
them or carries any other key. The rest of the config, infrastructure included, is the worker's: its runs get it
in their environment. `textclf worker` serves them in one process; `textclf worker --work-pool NAME` registers
them for a work pool (process or Kubernetes workers, e.g. on GPU nodes) instead, the config in the job's env.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Schedule

from textclf.config import PipelineConfig
from textclf.deployments import DROP_EVENTS, MANUAL_DEPLOYMENT, MONITOR_DEPLOYMENT, SCHEDULED_DEPLOYMENT
from textclf.form import deployment_env, form_of
from textclf.monitor.inbox import InboxWatcher
from textclf_flows.events import inbox_file
from textclf_flows.monitor import monitor_from_event
from textclf_flows.retrain import retrain_from_form

REPO_ROOT = Path(__file__).resolve().parent.parent
TAGS = ["textclf"]


def _common(cfg: PipelineConfig) -> dict:
    return {"parameters": {"form": form_of(cfg)}, "tags": TAGS, "enforce_parameter_schema": True}


def _schedule(cfg: PipelineConfig) -> Schedule:
    return Cron(cfg.ops.cron, timezone=cfg.ops.timezone)


def drop_trigger() -> DeploymentEventTrigger:
    """Any drop event starts one monitor run for it; the event's payload names the drop (jinja, rendered by the server)."""
    return DeploymentEventTrigger(
        name="new data",
        expect=set(DROP_EVENTS),
        match={"prefect.resource.id": "textclf.*"},
        parameters={"drop": "{{ event.payload.path }}", "event": "{{ event.event }}"},
    )


MONITOR_DESCRIPTION = (
    "Judge a new drop with the champion (input drift, prediction drift, decay) when `textclf data add` or a file "
    "landing in data.inbox sends an event; start retrain/manual when the retrain policy (monitor.*) says so, "
    "otherwise finish as Skipped with the scores."
)


def runner_deployments(cfg: PipelineConfig) -> list:
    scheduled = retrain_from_form.to_deployment(
        name=SCHEDULED_DEPLOYMENT,
        schedules=[_schedule(cfg)],
        **_common(cfg),
        description=f"Retrain on the cron '{cfg.ops.cron}' ({cfg.ops.timezone}); a run whose data, config and "
        "code equal the last successful run's finishes as Skipped.",
    )
    manual = retrain_from_form.to_deployment(
        name=MANUAL_DEPLOYMENT, **_common(cfg), description="Retrain on demand: Run > Custom run opens the run form."
    )
    watch = monitor_from_event.to_deployment(
        name=MONITOR_DEPLOYMENT, triggers=[drop_trigger()], tags=TAGS, description=MONITOR_DESCRIPTION
    )
    return [scheduled, manual, watch]


def serve_deployments(cfg: PipelineConfig, limit: int = 1) -> None:
    """Create the deployments and run their flow runs here (one at a time by default) until interrupted; with a
    data.inbox, watch it and send an event for each drop that lands there (the monitor deployment's trigger).

    The runs are subprocesses of this one: they find the deployment's config in the environment."""
    os.environ.update(deployment_env(cfg))
    watcher = InboxWatcher(Path(cfg.data.inbox), inbox_file) if cfg.data.inbox else None
    if watcher is not None:
        watcher.start()
    try:
        serve(*runner_deployments(cfg), limit=limit, pause_on_shutdown=False)
    finally:
        if watcher is not None:
            watcher.stop()


def deploy_to_pool(cfg: PipelineConfig, work_pool: str, source: Path = REPO_ROOT) -> list[str]:
    """Register both deployments for `work_pool`; its workers run the flow from `source` (a checkout path)."""
    flow = retrain_from_form.from_source(source=str(source), entrypoint="flows/retrain.py:retrain_from_form")
    ids = [
        str(
            monitor_from_event.from_source(source=str(source), entrypoint="flows/monitor.py:monitor_from_event").deploy(
                name=MONITOR_DEPLOYMENT,
                work_pool_name=work_pool,
                build=False,
                push=False,
                print_next_steps=False,
                job_variables={"env": deployment_env(cfg)},
                triggers=[drop_trigger()],
                tags=TAGS,
                description=MONITOR_DESCRIPTION,
            )
        )
    ]
    for name, extra in ((SCHEDULED_DEPLOYMENT, {"schedules": [_schedule(cfg)]}), (MANUAL_DEPLOYMENT, {})):
        ids.append(
            str(
                flow.deploy(
                    name=name,
                    work_pool_name=work_pool,
                    build=False,
                    push=False,
                    print_next_steps=False,
                    job_variables={"env": deployment_env(cfg)},  # the config reaches the job, not the form
                    **extra,
                    **_common(cfg),
                )
            )
        )
    return ids


# The placeholder the webhook block's `url` holds; the URL itself is one of the block's secret values.
WEBHOOK_URL_SECRET = "webhook_url"


def save_webhook_block(name: str, url: str) -> str:
    """Store a custom-webhook notification block whose URL (it may hold a token) is a secret of the block.

    CustomWebhookNotificationBlock's `url` is a plain field, but every field may be a `{{key}}` template filled
    from `secrets` (a SecretDict) when it sends: the URL sits there, encrypted by the server and shown as
    `********` in the UI and to any client that does not ask for secrets. Prefect automations can use the block too.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=name,
        url="{{" + WEBHOOK_URL_SECRET + "}}",
        secrets={WEBHOOK_URL_SECRET: url},
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    block.save(name, overwrite=True)
    return f"custom-webhook/{name}"
