"""A tracking-server outage in the middle of a real (tiny) training under torchrun: the MLflow server is killed
(its whole process group) once the first metrics arrived and restarted on the same port and store a few steps
later. Training must go on through the outage and the run must end with every metric metrics.jsonl has.

Real processes, the real tiny model and real rows; every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from real_servers import mlflow_server

from textclf import stages
from textclf.config import build_config
from textclf.train.process import kill_tree


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
    server = mlflow_server(tmp_path / "server")  # textclf serve's MLflow service, sqlite store
    url = server.url
    cfg = build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "tracking": {"tracking_uri": url},
            "train": {
                "kind": "finetune",
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
        server.kill()  # kill -9 of its process group: an outage, not a shutdown
        at_stop = max(logged(jsonl), default=0)
        # With MLflow's own retries (7, exponential backoff) the first log call after the kill blocks for minutes:
        # no new step reaches metrics.jsonl, and this wait fails.
        wait_until(lambda: max(logged(jsonl), default=0) >= at_stop + 8, 60, "8 new steps during the outage", trainer, lines)
        at_restart = max(logged(jsonl))
        server.start()  # same port, same store
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
        server.kill()
