"""torchrun on CPU (gloo): failing ranks, one MLflow run, DDP == one process, resume after kill -9.

Real processes, the real tiny model and real rows; every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from textclf import stages
from textclf.config import build_config, dump_yaml
from textclf.errors import TrainingFailed
from textclf.train.launch import _child_env, launch_training, torchrun_command
from textclf.train.process import descendants

HERE = Path(__file__).resolve().parent


def tiny_train_config(root: Path, model: Path, rows: Path, **train):
    return build_config(
        {
            "output_dir": str(root / "outputs"),
            "data": {"source": str(rows), "seed": 1},
            "train": {
                "kind": "finetune",
                "model": str(model),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 64,
                "logging_steps": 2,
                "checkpoint_steps": 100,
                "timeout_s": 300,
                **train,
            },
        }
    )


@pytest.fixture(scope="module")
def splits(tmp_path_factory, rows_csv, tiny_model) -> stages.DataRef:
    root = tmp_path_factory.mktemp("dist-data")
    cfg = tiny_train_config(root, tiny_model, rows_csv)
    return stages.split(cfg, stages.ingest(cfg, root), root)


def test_a_failing_rank_fails_the_launch_with_its_error_quickly(tmp_path):
    """Rank 1 raises while rank 0 blocks in all_reduce (900 s gloo timeout): torchrun must stop
    rank 0 and the launch must name rank 1's error, in well under a minute."""
    cfg = build_config({"train": {"nproc_per_node": 2, "timeout_s": 120}}).train
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(TrainingFailed) as failed:
        launch_training(cfg, [str(tmp_path)], tmp_path, log_line=lines.append, entry=(str(HERE / "dist_fail_entry.py"),))
    elapsed = time.monotonic() - started
    assert "rank 1: ValueError: rank one broke on purpose" in str(failed.value)
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert any("rank one broke on purpose" in line for line in lines)  # the rank's output was streamed


def test_launch_timeout_kills_every_rank(tmp_path):
    """Past train.timeout_s the launcher kills torchrun and its ranks (which live in their own sessions)."""
    script = tmp_path / "sleeper.py"
    script.write_text("import os, time\nprint('rank up', os.getpid(), flush=True)\ntime.sleep(600)\n")
    cfg = build_config({"train": {"nproc_per_node": 2, "timeout_s": 20}}).train
    lines: list[str] = []
    with pytest.raises(TrainingFailed, match="timeout_s=20"):
        launch_training(cfg, [], tmp_path, log_line=lines.append, entry=(str(script),))
    pids = [int(line.split()[-1]) for line in lines if line.startswith("rank up")]
    assert pids, "no rank started before the timeout"  # a rank slow to import (a cold first start) may not print
    deadline = time.monotonic() + 10
    while (_running(script) or any(Path(f"/proc/{pid}").exists() for pid in pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert _running(script) == [], "a rank outlived the launcher"  # every rank, printed or not


def _running(script: Path) -> list[int]:
    """Processes whose command line runs `script` (the ranks), from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(script).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_two_ranks_log_one_mlflow_run(tmp_path, splits, tiny_model, rows_csv):
    cfg = tiny_train_config(tmp_path, tiny_model, rows_csv, nproc_per_node=2)
    run = stages.start_tracking(cfg, "ddp", {})
    run_id = run.run_id
    result = stages.train(cfg, splits, tmp_path / "run", run, log_line=lambda line: None)
    assert result.world_size == 2
    client = MlflowClient(tracking_uri=cfg.mlflow_uri())
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # exactly one run, whatever the number of ranks
    losses = client.get_metric_history(run_id, "train_loss")
    steps = [m.step for m in losses]
    assert steps and len(steps) == len(set(steps))  # each step logged once, by rank 0 only
    assert client.get_metric_history(run_id, "val_accuracy")
    assert runs[0].data.params["train.nproc_per_node"] == "2"


@pytest.mark.slow
def test_ddp_on_two_gloo_ranks_matches_one_process(tmp_path, splits, tiny_model, rows_csv):
    """2 ranks x batch 8 vs 1 process x batch 16 vs 1 process x batch 8 x 2 accumulation steps:
    the same examples per optimizer step (length grouping is defined on the step's examples),
    dropout off. The ranks must agree exactly; the others within 1e-6 per weight (summation order
    and per-rank padding differ; measured ~1e-7). Before the loss-scaling fix DDP was off by 2e-3."""
    weights = {}
    for name, nproc, batch, accum in [("ddp", 2, 8, 1), ("single", 1, 16, 1), ("accum", 1, 8, 2)]:
        out = tmp_path / name
        out.mkdir()
        cfg = tiny_train_config(
            tmp_path, tiny_model, rows_csv, nproc_per_node=nproc, batch_size=batch, grad_accum_steps=accum, warmup_ratio=0.0
        )
        (out / "config.yaml").write_text(dump_yaml(cfg))
        cmd = torchrun_command(
            cfg.train, [str(out / "config.yaml"), splits.path, str(out)], entry=(str(HERE / "ddp_weights_entry.py"),)
        )
        done = subprocess.run(cmd, env=_child_env(cfg.train), capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        weights[name] = [load_file(str(out / f"rank{r}.safetensors")) for r in range(nproc)]
    rank0, rank1 = weights["ddp"]
    initial = load_file(str(tiny_model / "model.safetensors"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    moved = max(
        (rank0[k] - initial[k.removeprefix("bert.")]).abs().max().item() for k in rank0 if k.removeprefix("bert.") in initial
    )
    assert moved > 1e-3  # training did change the weights
    for other in ("single", "accum"):
        gap = max((rank0[k] - weights[other][0][k]).abs().max().item() for k in rank0)
        assert gap < 1e-6, f"DDP vs {other}: max |dw| = {gap:.2e}"


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.mark.slow
def test_resume_after_kill_9_ends_like_an_uninterrupted_run(tmp_path, splits, tiny_model, rows_csv):
    """Tolerance: |val_loss| and every final weight within 1e-5 of the uninterrupted run.

    2 epochs of 10 steps, checkpoints every 3 steps. The process group is killed with SIGKILL
    once a checkpoint from the second epoch is complete, so the resumed epoch's data order must
    come from (seed, epoch), not from the restored RNG.
    """
    cfg = tiny_train_config(
        tmp_path, tiny_model, rows_csv, epochs=2, checkpoint_steps=3, keep_checkpoints=2, select_best=False, nproc_per_node=1
    )
    reference = stages.train(cfg, splits, tmp_path / "reference", log_line=lambda line: None)
    assert reference.global_step == 20 and reference.resumed_from_step == 0

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    args = ["train", "--config", str(run / "config.yaml"), "--data", splits.path, "--out", str(run)]
    proc = subprocess.Popen(
        torchrun_command(cfg.train, args),
        env=_child_env(cfg.train),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: any((run / "checkpoints" / f"checkpoint-{s}" / "trainer_state.json").is_file() for s in (12, 15)),
            240,
            "a checkpoint of the second epoch",
        )
        ranks = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's group; the rank (own session) follows it
        proc.wait(timeout=30)
        _wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in ranks), 30, "the rank to die")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (run / "result.json").exists(), "training finished before it was killed"

    resumed = stages.train(cfg, splits, run, log_line=lambda line: None)
    assert resumed.resumed_from_step >= 12
    assert resumed.global_step == reference.global_step == 20
    assert resumed.tokenize_cache_hits == {"train": True, "validation": True}  # no re-tokenising
    assert abs(resumed.val_metrics["val_loss"] - reference.val_metrics["val_loss"]) < 1e-5
    assert resumed.val_metrics["val_accuracy"] == reference.val_metrics["val_accuracy"]
    final = load_file(str(run / "model" / "model.safetensors"))
    expected = load_file(str(tmp_path / "reference" / "model" / "model.safetensors"))
    gap = max((final[k] - expected[k]).abs().max().item() for k in expected)
    assert gap < 1e-5, f"resumed vs uninterrupted: max |dw| = {gap:.2e}"
    history = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(history) == 20


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
