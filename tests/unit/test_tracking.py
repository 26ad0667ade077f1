"""The MLflow metric sink against a real tracking server that is not there yet, then is (loopback, sqlite store)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from textclf.serve import http_get
from textclf.settings import telemetry_off_env
from textclf.tracking import FanoutSink, JsonlSink, MlflowSink


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to pick it, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(port: int, db: Path, artifacts: Path, log: Path) -> subprocess.Popen:
    """`mlflow server` on loopback in its own process group; returns once GET /health answers (bounded)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}"]
    cmd += ["--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port)]
    # no background job runner: six more processes that only slow the start on a loaded machine
    env = {**os.environ, **telemetry_off_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("ab") as out:
        proc = subprocess.Popen([*cmd, "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while http_get(f"http://127.0.0.1:{port}/health", timeout_s=2)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"mlflow server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    return proc


def test_against_a_closed_port_log_returns_fast_keeps_every_point_in_order_and_never_raises(tmp_path, caplog):
    jsonl = tmp_path / "metrics.jsonl"
    sink = MlflowSink(f"http://127.0.0.1:{closed_port()}", "0" * 32, kept_in=jsonl, wait_s=0)
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP")}
    slowest = 0.0
    with caplog.at_level(logging.WARNING, logger="textclf.tracking"):
        for step in range(1, 21):
            started = time.monotonic()
            sink.log({"train_loss": 1.0 / step, "epoch": step / 20}, step)
            slowest = max(slowest, time.monotonic() - started)
        assert sink.flush() is False  # still down: an explicit flush says so and raises nothing
        assert slowest < 2.0, f"a log call took {slowest:.1f}s against a closed port"
        assert sink.pending == 40
        assert [(m.key, m.step) for m in sink.buffer][:4] == [("train_loss", 1), ("epoch", 1), ("train_loss", 2), ("epoch", 2)]
        assert [m.step for m in sink.buffer] == sorted(m.step for m in sink.buffer)
        assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP")} == before  # short retries: sink only
        buffering = [r.getMessage() for r in caplog.records if "buffering" in r.getMessage()]
        assert len(buffering) == 1 and "from step 1" in buffering[0] and str(jsonl) in buffering[0]
        sink.close()  # wait_s=0: gives up at once, with the count and where the points are
    final = caplog.records[-1].getMessage()
    assert "40 metric points were not sent" in final and str(jsonl) in final and "unreachable" in final


def test_a_full_buffer_drops_the_oldest_points_and_counts_them():
    sink = MlflowSink(f"http://127.0.0.1:{closed_port()}", "0" * 32, wait_s=0, max_buffered=5)
    for step in range(10):
        sink.log({"train_loss": float(step)}, step)
    assert [m.step for m in sink.buffer] == [5, 6, 7, 8, 9]
    assert sink.dropped == 5


def test_fanout_closes_every_sink(tmp_path):
    closed = MlflowSink(f"http://127.0.0.1:{closed_port()}", "0" * 32, wait_s=0)
    fan = FanoutSink(JsonlSink(tmp_path / "metrics.jsonl"), closed)
    fan.log({"train_loss": 0.5}, 1)
    assert closed.pending == 1
    fan.close()
    assert closed.pending == 0  # given up (and warned about), not held forever
    assert (tmp_path / "metrics.jsonl").read_text().strip() == '{"step": 1, "train_loss": 0.5}'


@pytest.mark.slow
def test_flush_sends_the_held_points_in_order_once_a_real_server_listens(tmp_path, caplog):
    """The run exists in the sqlite store before any server does; the server then starts on the sink's port."""
    db = tmp_path / "mlflow.db"
    local = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = local.create_experiment("outage", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = local.create_run(experiment).info.run_id
    port = closed_port()
    sink = MlflowSink(f"http://127.0.0.1:{port}", run_id, wait_s=0)
    for step in range(1, 31):
        sink.log({"train_loss": 1.0 / step}, step)
    held = [(m.step, m.value, m.timestamp) for m in sink.buffer]
    assert len(held) == 30
    server = start_mlflow_server(port, db, tmp_path / "artifacts", tmp_path / "server.log")
    try:
        with caplog.at_level(logging.WARNING, logger="textclf.tracking"):
            assert sink.flush() is True
            sink.log({"train_loss": 0.01}, 31)  # after recovery: straight through
        assert sink.pending == 0
        back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
        assert len(back) == 1 and "30 metric points" in back[0] and "since step 1" in back[0]
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        history = client.get_metric_history(run_id, "train_loss")
        # every point, each with its own step, value and the time it was logged (not the time it was sent)
        assert sorted((m.step, m.value, m.timestamp) for m in history)[:30] == held
        assert sorted(m.step for m in history) == list(range(1, 32))

        refused = MlflowSink(f"http://127.0.0.1:{port}", "f" * 32, wait_s=0)  # no such run: 404, not an outage
        refused.log({"train_loss": 1.0}, 1)
        assert refused.pending == 0 and refused.refused == 1
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)
