"""HTTP serving latency of the deployed student at batch 1: `mlflow models serve` of the registered
(pickle-free) model vs the same weights called in this process.

  reference = `predict_proba` on one text at a time in this process (no HTTP, no JSON)
  ours      = POST /invocations of `mlflow models serve -m models:/textclf-student@champion --env-manager local`

The student is the default distillation student's architecture: 3 layers kept from all-MiniLM-L6-v2 with a
2-class head (latency does not depend on the weights' values), saved with max_length 128 as the runner saves it.
Comparisons: `http_latency_p50_vs_in_process`, `http_latency_p95_vs_in_process` (ratio = in-process / HTTP,
so < 1: what HTTP and JSON cost). Run: `.venv/bin/python bench/serving.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import comparison, write_results  # noqa: E402

from textclf import registry, stages, tracking  # noqa: E402
from textclf.config import PACKAGED_MODEL, build_config  # noqa: E402
from textclf.modeling import load_trained, predict_proba  # noqa: E402
from textclf.settings import telemetry_off_env  # noqa: E402
from textclf.timing import percentiles_ms  # noqa: E402
from textclf.train.student import build_layer_student  # noqa: E402

TEXTS = [
    "a moving, beautifully acted film",
    "tedious and far too long",
    "the cast is fine but the script never finds its footing, and the last act drags on",
    "one of the year's best: funny, sharp and surprisingly tender",
    "I wanted to like it more than I did",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, text: str) -> dict:
    body = json.dumps({"dataframe_records": [{"text": text}]}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - our own loopback server
        return json.loads(resp.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--start-timeout-s", type=float, default=240.0)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        student, _ = build_layer_student(PACKAGED_MODEL, 3, ["negative", "positive"], work / "student")
        model, tokenizer = load_trained(student)
        tokenizer.model_max_length = 128  # what the training runner saves (train.max_length)
        tokenizer.save_pretrained(student)
        cfg = build_config({"output_dir": str(work / "outputs"), "registry": {"model_name": "textclf-student"}})
        reg = cfg.registry_target()
        run = stages.start_tracking(cfg, "serving-bench", {})
        version = registry.register_model(reg, run.run_id, student)
        run.end()
        tracking.client_for(reg.mlflow).set_registered_model_alias(reg.name, reg.alias, version.version)

        # In-process reference: the same weights, one text per call, tokenisation included.
        model, tokenizer = load_trained(student)
        for text in TEXTS:
            predict_proba(model, tokenizer, [text])
        local = []
        for i in range(opts.requests):
            start = time.perf_counter()
            predict_proba(model, tokenizer, [TEXTS[i % len(TEXTS)]])
            local.append((time.perf_counter() - start) * 1000)

        port = free_port()
        env = {
            **os.environ,
            **telemetry_off_env(),
            "MLFLOW_TRACKING_URI": reg.mlflow.uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        mlflow_bin = str(Path(sys.executable).parent / "mlflow")
        cmd = [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            f"models:/{reg.name}@{reg.alias}",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            started, deadline = time.perf_counter(), time.monotonic() + opts.start_timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):  # noqa: S310
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"mlflow models serve did not answer (exit {server.poll()})") from None
                    time.sleep(0.5)
            ready_s = time.perf_counter() - started
            url = f"http://127.0.0.1:{port}/invocations"
            for text in TEXTS:
                post(url, text)
            remote = []
            for i in range(opts.requests):
                start = time.perf_counter()
                answer = post(url, TEXTS[i % len(TEXTS)])
                remote.append((time.perf_counter() - start) * 1000)
            assert set(answer["predictions"][0]) >= {"label", "score"}, answer
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)

    loc, rem = percentiles_ms(local), percentiles_ms(remote)
    results = {
        "http_latency_p50_vs_in_process": comparison(loc.p50_ms, rem.p50_ms, "ms", higher_is_better=False),
        "http_latency_p95_vs_in_process": comparison(loc.p95_ms, rem.p95_ms, "ms", higher_is_better=False),
    }
    write_results(
        "serving",
        {"requests": opts.requests, "model": "3-layer MiniLM student, max_length 128", "server_ready_s": round(ready_s, 1)},
        results,
    )


if __name__ == "__main__":
    main()
