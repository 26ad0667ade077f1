"""Prefect events for new data: `textclf data add` (a new data version) and a drop landing in data.inbox.

The monitor/on-new-data deployment's trigger (flows/deploy.py) starts the monitor flow on either, with the event's
`payload.path` as the drop to judge. Events go to the Prefect API the environment names (PREFECT_API_URL), or to
`textclf serve`'s on its default address when that one answers; with neither there is no one to tell and nothing
is sent.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prefect.events import Event
from prefect.events.clients import PrefectEventsClient
from prefect.settings import PREFECT_API_URL

from textclf.deployments import DATA_ADDED_EVENT, INBOX_EVENT
from textclf.serve import StackSettings, prefect_health
from textclf.versioning import DataVersion

log = logging.getLogger(__name__)


def events_api_url() -> str | None:
    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    stack = StackSettings()
    return stack.prefect_api if prefect_health(stack)[0] else None


async def _send(url: str, event: Event) -> None:
    async with PrefectEventsClient(api_url=url, reconnection_attempts=2) as client:
        await client.emit(event)


def emit(name: str, resource_id: str, payload: dict, url: str | None = None) -> Event | None:
    """Send one event now (not through Prefect's background worker: a CLI process may exit right after)."""
    url = url or events_api_url()
    if url is None:
        return None
    event = Event(
        event=name,
        resource={"prefect.resource.id": resource_id, "prefect.resource.name": Path(payload["path"]).name},
        payload=payload,
    )
    asyncio.run(_send(url, event))
    return event


def data_added(src: Path, version: DataVersion, data_dir: Path) -> Event | None:
    """`textclf data add` made a new version: the drop is the copy in data_dir (a folder: the folder given)."""
    if not version.changed:
        return None  # identical data: nothing new to judge
    src = Path(src).expanduser().resolve()
    path = (data_dir / version.added[0]).resolve() if src.is_file() and version.added else src
    return emit(DATA_ADDED_EVENT, f"textclf.data.{version.md5}", {"path": str(path), "md5": version.md5, "rows": version.rows})


def inbox_file(path: Path) -> Event | None:
    return emit(INBOX_EVENT, f"textclf.inbox.{path.name}", {"path": str(Path(path).resolve())})
