"""The webhook URL (it may hold a token) is a secret value of its Prefect block: real Prefect server, real receiver."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "tok-9f2c1e"  # noqa: S105 - a test value, the thing that must not leak


@pytest.fixture()
def hook() -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    """Loopback webhook: records (path, JSON body) of each POST; answers 500 on /fail/."""
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, json.loads(body or b"{}")))
            self.send_response(500 if self.path.startswith("/fail/") else 204)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_the_saved_block_keeps_the_url_secret_and_notifications_still_reach_it(prefect_harness, hook, caplog):
    from prefect.client.orchestration import get_client

    from textclf_flows.deploy import save_webhook_block
    from textclf_tasks.notify import send

    base, received = hook
    url = f"{base}/hooks/{TOKEN}"
    slug = save_webhook_block("textclf-secret-test", url)
    assert slug == "custom-webhook/textclf-secret-test"

    with get_client(sync_client=True) as client:
        hidden = client.read_block_document_by_name("textclf-secret-test", "custom-webhook", include_secrets=False)
        shown = client.read_block_document_by_name("textclf-secret-test", "custom-webhook", include_secrets=True)
    assert TOKEN not in json.dumps(hidden.model_dump(mode="json"))
    assert TOKEN not in json.dumps(hidden.data) and "127.0.0.1" not in json.dumps(hidden.data)
    assert shown.data["secrets"]["webhook_url"] == url  # stored, for whoever may read secrets

    assert send(slug, "textclf: subject", "the body")
    assert received == [(f"/hooks/{TOKEN}", {"subject": "textclf: subject", "body": "the body"})]

    # A failing webhook is logged without its URL (an HTTP error's message quotes it).
    save_webhook_block("textclf-secret-fail", f"{base}/fail/{TOKEN}")
    logger = logging.getLogger("prefect.textclf.notify")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            assert not send("custom-webhook/textclf-secret-fail", "s", "b")
    finally:
        logger.removeHandler(caplog.handler)
    assert received[-1][0] == f"/fail/{TOKEN}"
    assert "failed" in caplog.text and TOKEN not in caplog.text
