"""The `textclf` command: the library's CLI (textclf.cli) plus the commands that need the flows.

The library never imports the orchestration layer, so `run` and `worker` are added to its app here,
and the `textclf` console script starts from this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from textclf.cli import DATA_ADDED_HOOKS, ConfigOpt, SetOpt, app, load_cli_config, monitor_app
from textclf.cli import main as library_main
from textclf.runlog import log_to_file
from textclf.settings import env_value


@app.command()
def run(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Run the `retrain` flow: ingest, split, validate, augment, train, evaluate, distill, register."""
    from textclf.preflight import preflight  # torch and transformers: only for the commands that need them

    cfg = load_cli_config(config, overrides)
    preflight(cfg)  # a missing source, column or model fails here in one line, before Prefect starts
    if cfg.registry.trigger is None:
        cfg.registry.trigger = "cli"  # the audit trail says who started the run
    from textclf_flows.retrain import retrain  # Prefect's import costs seconds: only for this command

    log = log_to_file(cfg.output_path / "logs")  # after Prefect set up its console handler, before any run
    try:
        summary = retrain(cfg)
    finally:
        typer.echo(f"textclf: full log of this run: {log}", err=True)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def worker(
    work_pool: Annotated[
        str | None,
        typer.Option(
            help=(
                "Register the deployments for this Prefect work pool (process or Kubernetes workers run them) and exit, "
                "instead of serving them here."
            )
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Flow runs at a time in this process.")] = 1,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Create the retrain/scheduled and retrain/manual deployments and run their flow runs (Prefect `serve`)."""
    cfg = load_cli_config(config, overrides)
    from textclf_flows import deploy  # Prefect's import costs seconds: only for this command

    webhook = env_value("TEXTCLF_WEBHOOK_URL")
    if webhook and cfg.ops.notify_block:
        # The URL (it may carry a token) is a secret value of a Prefect block, never a parameter or a log line.
        deploy.save_webhook_block(cfg.ops.notify_block.split("/", 1)[-1], webhook)
        typer.echo(f"notifications: block {cfg.ops.notify_block} saved from TEXTCLF_WEBHOOK_URL")
    if work_pool:
        for dep_id in deploy.deploy_to_pool(cfg, work_pool):
            typer.echo(f"deployment {dep_id} registered for work pool {work_pool}")
        return
    deploy.serve_deployments(cfg, limit=limit)


@monitor_app.command("check")
def monitor_check(
    drop: Annotated[
        str | None,
        typer.Argument(help="A drop file or folder, labelled or not; empty: the configured data's rows new since the champion."),
    ] = None,
    retrain: Annotated[bool, typer.Option(help="Run the retrain flow here when the policy says so.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Judge a drop with the champion (monitor.model) and print the policy's decision (JSON)."""
    cfg = load_cli_config(config, overrides)
    from textclf.monitor.core import check_drop  # a bad drop or no champion fails here, before Prefect starts

    check_drop(Path(drop) if drop is not None else None, cfg)
    from textclf_flows.monitor import monitor  # Prefect's import costs seconds: only for this command

    log = log_to_file(cfg.output_path / "logs")  # tracebacks of a failed run go to the file, not the console
    try:
        summary = monitor(cfg, drop, return_state=True).result()
    finally:
        typer.echo(f"textclf: full log of this run: {log}", err=True)
    typer.echo(json.dumps(summary, indent=2, default=str))
    if retrain and summary.get("retrain"):
        if cfg.registry.trigger is None:
            cfg.registry.trigger = "monitor"
        cfg.ops.reason = summary["retrain_reason"]
        from textclf_flows.retrain import retrain as retrain_flow

        typer.echo(json.dumps(retrain_flow(cfg), indent=2, default=str))


def _tell_prefect(path: Path, version, data_dir: Path) -> str | None:
    """telling the Prefect server (monitor/on-new-data)"""
    from textclf_flows.events import data_added  # Prefect's import: only when a version was made

    event = data_added(path, version, data_dir)
    return f"event {event.event} sent: the monitor deployment judges {event.payload['path']}" if event else None


DATA_ADDED_HOOKS.append(_tell_prefect)


def main() -> None:
    library_main()


if __name__ == "__main__":
    main()
