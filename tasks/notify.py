"""Notifications through a Prefect notification block (e.g. a custom webhook) named in `ops.notify_block`.

The block holds the URL and any token, as a secret value (`textclf worker` saves it so: flows/deploy.py
`save_webhook_block`); flow parameters and logs never do: a failure is logged by its type only, since an HTTP
error's message quotes the URL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.blocks.core import Block
from prefect.logging import get_logger

from textclf.config import PipelineConfig
from textclf.form import config_of_run
from textclf.promotion import PromotionOutcome

logger = get_logger("textclf.notify")


def send(block_name: str | None, subject: str, body: str) -> bool:
    """Send through the named block; False (logged, never raised) when it is unset, missing or fails."""
    if not block_name:
        return False
    try:
        # Any: a block type known at run time; called from sync code, load returns the block, not a coroutine
        block: Any = Block.load(block_name)
    except Exception as err:  # missing block or unknown block type: notifications are optional
        logger.info("no notification sent: block %r not loaded (%s)", block_name, str(err).splitlines()[0])
        return False
    try:
        with _quiet_http_clients():
            block.notify(body=body, subject=subject)
    except Exception as err:  # a notification must never fail the run it reports on
        logger.warning("notification through %r failed: %s", block_name, type(err).__name__)
        return False
    return True


@contextmanager
def _quiet_http_clients() -> Iterator[None]:
    """httpx and httpcore log every request's URL at INFO (and DEBUG): a webhook URL may carry a token, so
    their records stay below WARNING while a notification is sent, whatever level the process set."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def notify_failure(flow, flow_run, state) -> None:
    """Flow hook (on_failure / on_crashed): tell the block which run failed and why."""
    cfg = config_of_run(flow_run.parameters or {})
    block = cfg.ops.notify_block if cfg else PipelineConfig().ops.notify_block
    send(
        block,
        f"textclf: flow run {flow_run.name} {state.name.lower()}",
        f"Flow run {flow_run.name} ({flow_run.id}) of {flow.name} ended {state.name}: {state.message or ''}",
    )


def notify_promotion(cfg: PipelineConfig, outcome: PromotionOutcome) -> bool:
    body = f"{outcome.name} v{outcome.version} is now @{cfg.registry.champion_alias}: {outcome.reason}" + (
        f" ({outcome.version_url})" if outcome.version_url else ""
    )
    return send(cfg.ops.notify_block, f"textclf: {outcome.name} v{outcome.version} promoted", body)
