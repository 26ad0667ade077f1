"""A registered model is code and safetensors, never a pickle: the gate, `predict` and the label filter load
its Hugging Face folder through safetensors only, and `mlflow models serve` answers label and score per
text over real HTTP on loopback, truncating at the max_length saved with the model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from real_servers import free_port

from textclf import promotion, registry, stages, tracking
from textclf.config import build_config
from textclf.errors import ModelNotFound
from textclf.modeling import load_trained, predict_proba, saved_max_length
from textclf.settings import telemetry_off_env
from textclf.timing import percentiles_ms

MAX_LENGTH = 32  # saved with the model: serving must truncate here, not at the tokenizer's 512
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib")
START_TIMEOUT_S = 180
LATENCY_REQUESTS = 50


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, tiny_classifier) -> Path:
    """The tiny classifier with train.max_length=32 saved in its tokenizer, as the training runner saves it."""
    from transformers import AutoTokenizer

    dest = tmp_path_factory.mktemp("clf-32") / "model"
    shutil.copytree(tiny_classifier, dest)
    tokenizer = AutoTokenizer.from_pretrained(dest)
    tokenizer.model_max_length = MAX_LENGTH
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained_folder):
    """A sqlite store with `trained_folder` registered (version 1) and holding the champion alias."""
    cfg = build_config({"output_dir": str(tmp_path_factory.mktemp("serving") / "outputs"), "augment": {"enabled": False}})
    reg = cfg.registry_target()
    run = stages.start_tracking(cfg, "serving", {})
    version = registry.register_model(reg, run.run_id, trained_folder)
    run.end()
    tracking.client_for(reg.mlflow).set_registered_model_alias(reg.name, reg.alias, version.version)
    return cfg, version


def artifact_files(client, run_id: str, path: str) -> list[str]:
    """Every file under a run's artifact `path`, recursively (paths from the run's artifact root)."""
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return out


TEXTS = [
    "a moving, beautifully acted film",
    "tedious and far too long",
    "fine",
    # over MAX_LENGTH tokens: the answer depends on where the text is truncated
    "the plot wanders from one set piece to the next, the dialogue is stilted and the pacing drags, "
    "yet the final act, with its quiet reconciliation between two estranged brothers, lands with real force "
    "and makes the long road there feel almost worth it",
]


def test_a_registered_model_holds_code_and_safetensors_and_no_pickle(store, trained_folder):
    cfg, version = store
    reg = cfg.registry_target()
    client = tracking.client_for(reg.mlflow)
    mv = client.get_model_version(reg.name, version.version)
    run_id, _, path = mv.source.removeprefix("runs:/").partition("/")
    files = [f.removeprefix(f"{path}/") for f in artifact_files(client, run_id, path)]
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)], files
    assert {"MLmodel", "pyfunc_model.py"} <= set(files)
    weights = [f for f in files if f.endswith("model.safetensors")]
    assert len(weights) == 1 and weights[0].startswith("artifacts/")
    # the label set travels with the version, in id order, readable without downloading the model
    config = json.loads((trained_folder / "config.json").read_text())
    expected = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    assert json.loads(mv.tags[registry.LABELS_TAG]) == expected and len(expected) >= 2


def test_load_registered_reads_the_safetensors_folder(store, trained_folder, tmp_path):
    cfg, _ = store
    reg = cfg.registry_target()
    model, tokenizer, folder = registry.load_registered(reg.mlflow, registry.champion_uri(reg), tmp_path)
    assert (folder / "model.safetensors").is_file() and folder.is_relative_to(tmp_path)
    assert saved_max_length(tokenizer) == MAX_LENGTH
    reference = predict_proba(*load_trained(trained_folder), TEXTS)
    np.testing.assert_array_equal(predict_proba(model, tokenizer, TEXTS).probs, reference.probs)


def test_predict_and_the_label_filter_use_the_champions_weights_and_saved_max_length(store, trained_folder, tmp_path):
    from typer.testing import CliRunner

    from textclf.augment.label_filter import label_filter_for
    from textclf.cli import app
    from textclf.config import LabelFilterConfig

    cfg, _ = store
    expected = predict_proba(*load_trained(trained_folder), TEXTS, max_length=MAX_LENGTH)
    result = CliRunner().invoke(app, ["predict", "--set", f"output_dir={cfg.output_dir}", *TEXTS])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert [(label, text) for label, _, text in lines] == list(zip(expected.names, TEXTS, strict=True))
    np.testing.assert_allclose([float(score) for _, score, _ in lines], expected.scores, rtol=0, atol=1e-4)

    predict, note = label_filter_for(LabelFilterConfig(enabled=True), cfg.registry_target(), tmp_path / "filter")
    assert note is None and predict is not None
    np.testing.assert_array_equal(predict(TEXTS).probs, expected.probs)


def test_a_version_with_pickled_weights_is_refused_by_the_gate_and_predict(store, trained_folder, tmp_path):
    """Whoever can write a version cannot make the gate or `predict` unpickle: such a version is refused."""
    cfg, _ = store
    reg = cfg.registry_target()
    client = tracking.client_for(reg.mlflow)
    hostile = tmp_path / "hostile"
    shutil.copytree(trained_folder, hostile / "artifacts" / "model")
    (hostile / "artifacts" / "model" / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, hostile / "artifacts" / "model" / "pytorch_model.bin")
    (hostile / "python_model.pkl").write_bytes(b"not loaded")
    run = stages.start_tracking(cfg, "hostile", {})
    client.log_artifacts(run.run_id, str(hostile), "model")
    run.end()
    mv = client.create_model_version(reg.name, source=f"runs:/{run.run_id}/model", run_id=run.run_id)
    with pytest.raises(ModelNotFound) as err:
        registry.load_registered(reg.mlflow, f"models:/{reg.name}/{mv.version}", tmp_path / "dl")
    assert "pytorch_model.bin" in str(err.value) and "safetensors" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFound, match="pickled weights"):
        promotion.evaluate_version(reg, cfg.evaluate, str(mv.version), tmp_path, batch_size=16)


def _post(url: str, texts: list[str]) -> list[dict]:
    body = json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


def _wait_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll /ping until it answers 200; bounded, and fails at once if the server exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on {base}/ping after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)  # poll interval


@pytest.mark.slow
def test_mlflow_models_serve_answers_label_and_score_per_text(store, trained_folder, tmp_path):
    cfg, _ = store
    reg = cfg.registry_target()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = {
        **os.environ,
        **telemetry_off_env(),
        "MLFLOW_TRACKING_URI": cfg.mlflow_uri(),
        # the scoring server is `uvicorn` from this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(mlflow_cli), "models", "serve", "-m", registry.champion_uri(reg), "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        started = time.monotonic()
        _wait_ready(base, proc, log)
        print(f"\nmlflow models serve ready in {time.monotonic() - started:.1f}s")

        served = _post(f"{base}/invocations", TEXTS)
        model, tokenizer = load_trained(trained_folder)
        expected = predict_proba(model, tokenizer, TEXTS, max_length=MAX_LENGTH)
        assert len(served) == len(TEXTS)
        assert [p["label"] for p in served] == expected.names
        assert all(p["label"] in {"negative", "positive"} and 0.0 <= p["score"] <= 1.0 for p in served)
        np.testing.assert_allclose([p["score"] for p in served], expected.scores, rtol=0, atol=1e-6)
        untruncated = predict_proba(model, tokenizer, TEXTS[-1:], max_length=512).scores[0]
        assert abs(served[-1]["score"] - untruncated) > 1e-6, "the long text was not truncated at the saved max_length"

        for text in TEXTS[:3]:  # warm-up, not timed
            _post(f"{base}/invocations", [text])
        times = []
        for i in range(LATENCY_REQUESTS):
            start = time.perf_counter()
            _post(f"{base}/invocations", [TEXTS[i % len(TEXTS)]])
            times.append((time.perf_counter() - start) * 1000)
        latency = percentiles_ms(times)
        print(
            f"HTTP serving latency, batch 1, {LATENCY_REQUESTS} requests (tiny 2-layer BERT, max_length {MAX_LENGTH}, "
            f"1 uvicorn worker): p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms"
        )
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the session the server was started in (mlflow's CLI and the uvicorn it runs); SIGKILL
    to whatever is left of it after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        proc.poll()  # reap the CLI, so that only live processes count below
        try:
            os.killpg(proc.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
