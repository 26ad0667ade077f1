"""A real stack for the service tests: Prefect server + MLflow server + the deployments' serve process,
started by `textclf.serve` on free loopback ports, plus a real HTTP receiver for notifications."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from real_servers import free_port

from textclf.serve import Stack, StackSettings, build_services
from textclf.settings import telemetry_off_env

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "outputs" / "test-artifacts"


class Receiver:
    """Webhook receiver on loopback: records every JSON body posted to it."""

    def __init__(self):
        self.messages: list[dict] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.messages.append(json.loads(body or b"{}"))
                    receiver.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notification in {timeout_s}s; got {self.messages}")
                self.arrived.wait(left)


@pytest.fixture(scope="session")
def receiver():
    rec = Receiver()
    yield rec
    rec.server.shutdown()


@pytest.fixture(scope="session")
def service_config(tmp_path_factory, tiny_model, rows_csv) -> dict:
    """The tiny pipeline config (as the deployments' default parameters); stores in a session tmp folder."""
    root = tmp_path_factory.mktemp("service")
    return {
        "output_dir": str(root / "outputs"),
        "data": {"source": str(rows_csv), "seed": 1},
        "train": {
            "kind": "finetune",
            "model": str(tiny_model),
            "epochs": 1,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "max_length": 64,
            "logging_steps": 2,
            "checkpoint_steps": 5,
        },
        "validate": {"max_duplicate_rate": 0.2},
        "distill": {"enabled": False},  # the tiny teacher has 2 layers; distillation has its own tests
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory, service_config, receiver):
    """`textclf serve`'s stack on free ports; yields its settings; stopped (all processes) at the end."""
    root = tmp_path_factory.mktemp("stack")
    config_file = root / "config.yaml"
    config_file.write_text(yaml.safe_dump(service_config))
    settings = StackSettings(prefect_port=free_port(), mlflow_port=free_port(), state_dir=root / "state")
    # Telemetry off in the servers and the worker whatever the outer environment says (build_services
    # would let it opt in): a test stack never phones home.
    env = {
        **os.environ,
        **telemetry_off_env(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "TEXTCLF_WEBHOOK_URL": receiver.url,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env.pop("PREFECT_API_URL", None)
    services = build_services(settings, ["--config", str(config_file)], env)
    running = Stack(services, REPO, echo=lambda line: print(f"[stack] {line}"))
    running.start(timeout_s=240)
    yield settings
    running.stop(grace_s=15)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for service in services:  # keep the logs with the test output
        if service.log.is_file():
            (ARTIFACTS / f"stack-{service.name}.log").write_text(service.log.read_text(errors="replace")[-200_000:])


@pytest.fixture(scope="session")
def prefect_client(stack):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(stack.prefect_api) as client:
        yield client


@pytest.fixture(scope="session")
def wait_final(prefect_client):
    """wait_final(flow_run_id, timeout_s): the flow run once it is final (bounded wait, polling the API)."""

    def wait(flow_run_id, timeout_s: float = 300):
        deadline = time.monotonic() + timeout_s
        while True:
            run = prefect_client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {run.name} still {run.state and run.state.name} after {timeout_s}s")
            time.sleep(1)

    return wait


@pytest.fixture(scope="session")
def mlflow_client(stack):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
