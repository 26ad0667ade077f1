"""Start training as a torchrun subprocess, stream every rank's output, bound its run time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch

from textclf.config import TrainConfig
from textclf.errors import TrainingFailed
from textclf.settings import cpu_threads
from textclf.train.failures import clear_failures, first_failure
from textclf.train.finetune import RESULT_FILE, TrainResult
from textclf.train.process import kill_tree

TEXTCLF_ENTRY = ("-m", "textclf")


def resolve_nproc(cfg: TrainConfig) -> int:
    """'auto': one process per visible GPU, or 1 on CPU (more CPU ranks only when asked: gloo)."""
    if cfg.nproc_per_node == "auto":
        return max(1, torch.cuda.device_count())
    return int(cfg.nproc_per_node)


def torchrun_command(
    cfg: TrainConfig, entry_args: list[str], entry: tuple[str, ...] = TEXTCLF_ENTRY, rdzv_id: str = "textclf"
) -> list[str]:
    """`python -m torch.distributed.run ... -m textclf train ...` for this node.

    Multi-node: every node runs the same command with its own `train.node_rank`; `rdzv_id`
    (the run folder's name) keeps concurrent jobs on one rendezvous host apart.
    """
    nproc = resolve_nproc(cfg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--nnodes={cfg.nnodes}",
        "--max-restarts=0",
    ]
    if cfg.nnodes > 1:
        cmd += [
            f"--node-rank={cfg.node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={cfg.rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
            f"--rdzv-conf=join_timeout={cfg.ddp_timeout_s}",
        ]
    else:
        cmd += ["--standalone"]
    return cmd + [*entry, *entry_args]


def _child_env(cfg: TrainConfig) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A rank that dies makes its peers' NCCL collectives raise instead of hanging until ddp_timeout.
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if not torch.cuda.is_available():
        # torchrun would otherwise force one thread per rank when nproc > 1.
        env["OMP_NUM_THREADS"] = str(max(1, cpu_threads() // resolve_nproc(cfg)))
    return env


def launch_training(
    cfg: TrainConfig,
    entry_args: list[str],
    run_dir: Path,
    log_line: Callable[[str], None] = print,
    entry: tuple[str, ...] = TEXTCLF_ENTRY,
) -> TrainResult:
    """Run the training entry under torchrun; returns what rank 0 wrote to `result.json`.

    A failing rank fails the whole launch with the error it recorded (or else the last error line
    of the output): torchrun stops the other ranks when one exits non-zero. A run past
    `cfg.timeout_s` is killed with its whole process group.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    clear_failures(run_dir)
    cmd = torchrun_command(cfg, entry_args, entry, rdzv_id=run_dir.resolve().name or "textclf")
    log_line(f"[launch] {' '.join(cmd)}")
    tail: deque[str] = deque(maxlen=200)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=_child_env(cfg), start_new_session=True
    )
    (run_dir / "launch.pid").write_text(str(proc.pid))

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log_line(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + cfg.timeout_s
    try:
        code = proc.wait(timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait(timeout=30)
        raise TrainingFailed(
            f"training ran past train.timeout_s={cfg.timeout_s}s and was killed; raise train.timeout_s or train on less data"
        ) from None
    except BaseException:
        kill_tree(proc.pid)
        raise
    finally:
        reader.join(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
    if code != 0:
        failure = first_failure(run_dir)
        cause = f"rank {failure['rank']}: {failure['message']}" if failure else _last_error(tail)
        raise TrainingFailed(f"training exited with code {code}: {cause}")
    if not (run_dir / RESULT_FILE).is_file():
        raise TrainingFailed(f"training finished but rank 0 wrote no {run_dir / RESULT_FILE}")
    return TrainResult.read(run_dir)


def _last_error(lines: deque[str]) -> str:
    """The most telling line of a failed run: the last exception or error message."""
    for line in reversed(lines):
        text = line.split("]:", 1)[-1].strip() if line.startswith("[rank") else line.strip()
        if text.startswith("textclf: error:"):
            return text.removeprefix("textclf: error:").strip()
    for line in reversed(lines):
        stripped = line.split("]:", 1)[-1].strip() if line.startswith("[rank") else line.strip()
        if stripped and ("Error" in stripped or "error" in stripped) and not _is_launcher_noise(stripped):
            return stripped[-500:]
    return lines[-1].strip()[-500:] if lines else "no output"


def _is_launcher_noise(line: str) -> bool:
    """Traceback frames and torchrun's own failure summary, which name no cause."""
    return (
        line.startswith(
            ("File ", "^", "error_file", "traceback", "torch.distributed.elastic", "raise ChildFailedError", "ChildFailedError")
        )
        or "elastic/errors.html" in line
    )
