"""A tracking-server outage in the middle of a real (tiny) training under torchrun: the MLflow server is killed
(its whole process group) once the first metrics arrived and restarted on the same port and store a few steps
later. Training must go on through the outage and the run must end with every metric metrics.jsonl has.

Real processes, the real tiny model and real rows; every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from textclf import stages
from textclf.config import build_config
from textclf.serve import http_get
from textclf.settings import telemetry_off_env
from textclf.train.process import kill_tree


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(port: int, store: Path, log: Path) -> subprocess.Popen:
    """`mlflow server` (sqlite store and artifacts in `store`) on loopback in its own process group; returns
    once GET /health answers (bounded)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(store / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1"]
    # no background job runner: six more processes that only slow the start on a loaded machine
    env = {**os.environ, **telemetry_off_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port), "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while http_get(f"http://127.0.0.1:{port}/health", timeout_s=2)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(f"mlflow server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 of the server's whole process group: an outage, not a shutdown."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def logged(jsonl: Path, key: str = "train_loss") -> dict[int, float]:
    """step -> value of `key` in metrics.jsonl (a line still being written is skipped)."""
    if not jsonl.is_file():
        return {}
    found = {}
    for line in jsonl.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in row:
            found[row["step"]] = row[key]
    return found


def wait_until(predicate, timeout_s: float, what: str, trainer: threading.Thread, lines: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if not trainer.is_alive() or time.monotonic() > deadline:
            why = "training ended before" if not trainer.is_alive() else f"within {timeout_s:.0f}s no"
            raise AssertionError(f"{why} {what}; training's last lines:\n" + "\n".join(lines[-15:]))
        time.sleep(0.25)


@pytest.mark.slow
def test_training_survives_a_tracking_server_outage_and_the_run_gets_every_metric(tmp_path, tiny_model, rows_csv):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = tmp_path / "server"
    store.mkdir()
    server = start_mlflow_server(port, store, tmp_path / "server.log")
    cfg = build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "tracking": {"tracking_uri": url},
            "train": {
                "model": str(tiny_model),
                "epochs": 3,
                "batch_size": 4,  # 40 steps an epoch on the 160 training rows: the outage falls in the middle
                "learning_rate": 1e-3,
                "max_length": 64,
                "logging_steps": 1,
                "checkpoint_steps": 1000,
                "timeout_s": 400,
            },
        }
    )
    splits = stages.split(cfg, stages.ingest(cfg, tmp_path / "data"), tmp_path / "data")
    run = stages.start_tracking(cfg, "outage", {})
    out = tmp_path / "run"
    jsonl = out / "metrics.jsonl"
    lines: list[str] = []
    outcome: dict = {}

    def train() -> None:
        try:
            outcome["result"] = stages.train(cfg, splits, out, run, log_line=lines.append)
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    trainer = threading.Thread(target=train, daemon=True)
    client = MlflowClient(tracking_uri=url)
    try:
        trainer.start()
        wait_until(lambda: client.get_metric_history(run.run_id, "train_loss"), 180, "train_loss in MLflow", trainer, lines)
        kill_group(server)
        at_stop = max(logged(jsonl), default=0)
        # With MLflow's own retries (7, exponential backoff) the first log call after the kill blocks for minutes:
        # no new step reaches metrics.jsonl, and this wait fails.
        wait_until(lambda: max(logged(jsonl), default=0) >= at_stop + 8, 60, "8 new steps during the outage", trainer, lines)
        at_restart = max(logged(jsonl))
        server = start_mlflow_server(port, store, tmp_path / "server.log")
        trainer.join(timeout=cfg.train.timeout_s + 60)
        assert not trainer.is_alive(), "training did not finish"
        assert "error" not in outcome, f"{outcome.get('error')!r}\n" + "\n".join(lines[-40:])
        assert (out / "result.json").is_file()
        assert outcome["result"].global_step > at_restart  # training went on after the restart too

        for key in ("train_loss", "learning_rate", "val_accuracy"):
            expected = logged(jsonl, key)
            got = {m.step: m.value for m in client.get_metric_history(run.run_id, key)}
            assert sorted(got) == sorted(expected), f"{key}: steps missing in MLflow: {sorted(set(expected) - set(got))}"
            assert got == pytest.approx(expected)
        assert any(at_stop < step <= at_restart for step in logged(jsonl))  # the outage really fell in the middle
        buffering = [line for line in lines if "buffering metrics" in line]
        back = [line for line in lines if "MLflow server" in line and "is back" in line]
        assert len(buffering) == 1 and len(back) == 1, "\n".join(buffering + back)
        assert not [line for line in lines if "were not sent" in line]
    finally:
        if trainer.is_alive() and (out / "launch.pid").is_file():
            kill_tree(int((out / "launch.pid").read_text()))
        kill_group(server)
