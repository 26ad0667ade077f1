"""Launcher pieces: the torchrun command line, error extraction, the GPU work-pool template."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import torch

from textclf.config import build_config
from textclf.train.failures import first_failure, recording_failures
from textclf.train.launch import _child_env, _last_error, resolve_nproc, torchrun_command

REPO = Path(__file__).resolve().parents[3]


def train_cfg(**values):
    return build_config({"train": values}).train


def test_auto_is_one_process_per_gpu_or_one_on_cpu():
    assert resolve_nproc(train_cfg()) == max(1, torch.cuda.device_count())
    assert resolve_nproc(train_cfg(nproc_per_node=3)) == 3


def test_single_node_command_is_standalone():
    cmd = torchrun_command(train_cfg(nproc_per_node=2), ["train", "--out", "x"])
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd and "--max-restarts=0" in cmd
    assert cmd[-5:] == ["-m", "textclf", "train", "--out", "x"]


def test_multi_node_command_uses_the_rendezvous():
    cfg = train_cfg(nproc_per_node=8, nnodes=4, node_rank=2, rdzv_endpoint="node0:29400", ddp_timeout_s=300)
    cmd = torchrun_command(cfg, ["train"], rdzv_id="run-17")
    assert "--standalone" not in cmd
    for flag in [
        "--nnodes=4",
        "--node-rank=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node0:29400",
        "--rdzv-id=run-17",
        "--rdzv-conf=join_timeout=300",
    ]:
        assert flag in cmd


def test_cpu_ranks_share_the_cores():
    env = _child_env(train_cfg(nproc_per_node=2))
    if not torch.cuda.is_available():
        assert int(env["OMP_NUM_THREADS"]) >= 1
        assert int(env["OMP_NUM_THREADS"]) * 2 <= max(2, len(__import__("os").sched_getaffinity(0)))
    assert env["PYTHONUNBUFFERED"] == "1"


def test_last_error_prefers_the_cause_over_torchrun_noise():
    lines = deque(
        [
            "[rank1]: Traceback (most recent call last):",
            '[rank1]:   File "x.py", line 3, in <module>',
            "[rank1]: RuntimeError: CUDA out of memory on device 1",
            "E1129 torch.distributed.elastic.multiprocessing.api: failed (exitcode: 1)",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
            "  error_file: <N/A>",
            "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html",
        ]
    )
    assert _last_error(lines) == "RuntimeError: CUDA out of memory on device 1"
    lines.append("[rank0]: textclf: error: data.source: /nope does not exist")
    assert _last_error(lines) == "data.source: /nope does not exist"


def test_failure_record_names_the_first_failing_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    try:
        with recording_failures(tmp_path):
            raise KeyError("labels")
    except KeyError:
        pass
    record = first_failure(tmp_path)
    assert record["rank"] == 3 and record["message"] == "KeyError: 'labels'"


def test_gpu_work_pool_template_resolves_with_its_defaults():
    from prefect.utilities.templating import apply_values

    template = json.loads((REPO / "infra" / "k8s-gpu-work-pool.json").read_text())
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    job = apply_values(template["job_configuration"], {**defaults, "name": "train", "command": "run"})
    container = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["env"]["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert job["job_manifest"]["spec"]["backoffLimit"] == 0
