"""New data starts monitoring, monitoring starts retraining: real Prefect + MLflow servers and the deployments' worker
(`textclf serve`'s stack) on loopback, a real DVC repository, `textclf data add` and a file landing in data.inbox.

One module stack, its own repository: the worker runs in it (data.data_dir, data.inbox), the champion is trained
by a first retrain/manual run, then each drop is judged by a monitor/on-new-data run its event started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from real_servers import free_port

from textclf.serve import Stack, StackSettings, build_services
from textclf.settings import telemetry_off_env

pytestmark = pytest.mark.slow
TEXTCLF = str(Path(sys.executable).parent / "textclf")
ARTIFACTS = Path(__file__).resolve().parents[2] / "outputs" / "test-artifacts"


@pytest.fixture(scope="module")
def world(tmp_path_factory, service_config, make_dvc_repo, real_rows):
    """A DVC repo with 200 real reviews as its first data version, the stack serving from it, and the env to call
    `textclf` against it."""
    root = tmp_path_factory.mktemp("monitor-events")
    repo = make_dvc_repo(root)
    (root / "seed").mkdir()
    first = real_rows(root / "seed" / "reviews.csv", 200, seed=0)
    config = {  # the service tests' tiny pipeline, reading the repository's tracked folder and inbox
        **service_config,
        "output_dir": str(root / "outputs"),
        "data": {"source": str(repo / "data" / "raw"), "data_dir": "data/raw", "inbox": str(repo / "inbox"), "seed": 1},
        "augment": {"enabled": False},
        "monitor": {"min_rows": 20, "min_labelled_rows": 100_000, "reference_rows": 100},
    }
    config_file = root / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    (repo / "inbox").mkdir()
    env = {**os.environ, **telemetry_off_env(), "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    add = subprocess.run(
        [TEXTCLF, "data", "add", str(first), "--config", str(config_file)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert add.returncode == 0, add.stderr
    assert "event" not in add.stdout  # no Prefect server to tell yet: nothing sent, nothing failed
    settings = StackSettings(prefect_port=free_port(), mlflow_port=free_port(), state_dir=root / "state")
    services = build_services(settings, ["--config", str(config_file)], env)
    stack = Stack(services, repo, echo=lambda line: print(f"[stack] {line}"))
    stack.start(timeout_s=240)
    client_env = {**env, "PREFECT_API_URL": settings.prefect_api}
    try:
        yield {"root": root, "repo": repo, "config": config_file, "settings": settings, "env": client_env, "rows": real_rows}
    finally:
        stack.stop(grace_s=15)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for service in services:
            if service.log.is_file():
                (ARTIFACTS / f"monitor-stack-{service.name}.log").write_text(service.log.read_text(errors="replace")[-200_000:])


@pytest.fixture(scope="module")
def client(world):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(world["settings"].prefect_api) as c:
        yield c


def _runs_of(client, deployment: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    dep = client.read_deployment_by_name(deployment)
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout_s:.0f}s")
        time.sleep(1)


def _new_final_run(client, deployment: str, known: set, timeout_s: float = 300):
    """The first run of `deployment` not in `known`, once it is final."""

    def final():
        for run in _runs_of(client, deployment):
            if run.id not in known and run.state is not None and run.state.is_final():
                return run
        return None

    return _wait(final, timeout_s, f"a new final run of {deployment}")


def _textclf(world, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TEXTCLF, *args, "--config", str(world["config"]), "--set", f"tracking.tracking_uri={world['settings'].mlflow_url}"],
        cwd=world["repo"],
        env=world["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def champion(world, client):
    dep = client.read_deployment_by_name("retrain/manual")
    run = client.create_flow_run_from_deployment(dep.id, parameters={"form": {**dep.parameters["form"], "reason": "champion"}})
    done = _new_final_run(client, "retrain/manual", set())
    assert done.id == run.id and done.state.is_completed(), done.state.message
    return done


def test_data_add_starts_monitor_which_skips_a_drift_free_drop_and_retrains_on_a_drifted_one(world, client, champion):
    from mlflow.tracking import MlflowClient

    drops = world["root"] / "drops"
    drops.mkdir()
    from textclf.data.sources import read_packaged_corpus

    corpus = read_packaged_corpus()
    unseen = corpus[~corpus["text"].isin(set(pd.read_csv(world["root"] / "seed" / "reviews.csv")["text"]))]
    same = drops / "same.csv"  # more reviews like the training data, none of them trained on
    pd.concat([g.sample(n=60, random_state=7) for _, g in unseen.groupby("label")]).to_csv(same, index=False)
    from textclf.monitor.drops import synopses

    synopses().head(60).to_csv(drops / "synopses.csv", index=False)  # film synopses: another kind of text

    known_monitor = {r.id for r in _runs_of(client, "monitor/on-new-data")}
    added = _textclf(world, "data", "add", str(same))
    assert added.returncode == 0, added.stderr
    assert "event textclf.data.added sent" in added.stdout
    skipped = _new_final_run(client, "monitor/on-new-data", known_monitor)
    assert skipped.state.is_completed() and skipped.state.name == "Skipped", skipped.state.message
    assert "embedding MMD p=" in skipped.state.message and "accuracy" in skipped.state.message
    assert skipped.parameters["drop"].endswith("same.csv")

    known_monitor.add(skipped.id)
    known_retrain = {r.id for r in _runs_of(client, "retrain/manual")}
    added = _textclf(world, "data", "add", str(drops / "synopses.csv"))
    assert added.returncode == 0, added.stderr
    judged = _new_final_run(client, "monitor/on-new-data", known_monitor)
    assert judged.state.is_completed() and judged.state.name != "Skipped", judged.state.message
    retrain = _new_final_run(client, "retrain/manual", known_retrain, timeout_s=400)
    assert retrain.state.is_completed(), retrain.state.message
    assert retrain.parameters["form"]["reason"].startswith("monitor: ") and "input_drift" in retrain.parameters["form"]["reason"]

    mlflow = MlflowClient(world["settings"].mlflow_url)
    experiment = mlflow.get_experiment_by_name("textclf-monitor")
    runs = {r.data.tags["prefect.flow_run_id"]: r for r in mlflow.search_runs([experiment.experiment_id])}
    assert runs[str(skipped.id)].data.tags["monitor.decision"] == "skipped"
    assert runs[str(judged.id)].data.tags["monitor.decision"] == "retrain"
    for run in (runs[str(skipped.id)], runs[str(judged.id)]):
        assert run.data.tags["monitor.champion"] == "textclf/1"
        assert "monitor/report.html" in {a.path for a in mlflow.list_artifacts(run.info.run_id, "monitor")}
    version = mlflow.get_model_version("textclf", "1")
    assert version.tags["monitor.runs"] == "2" and version.tags["monitor.latest.decision"] == "retrain"
    card_run, _, card_path = version.tags["model_card"].removeprefix("runs:/").partition("/")
    card = Path(mlflow.download_artifacts(card_run, card_path, str(world["root"]))).read_text()
    assert f"Monitored since {version.tags['monitor.since']}" in card

    history = _textclf(world, "monitor", "history", "--model", "textclf", "--png", str(world["root"] / "history.png"))
    assert history.returncode == 0, history.stderr
    rows = [line.split() for line in history.stdout.splitlines() if "v1" in line.split()]
    assert len(rows) == 2 and rows[0][-1] == "skipped" and rows[1][-1] == "retrain", history.stdout
    assert (world["root"] / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_file_landing_in_the_inbox_starts_monitor_on_that_file(world, client, champion):
    known = {r.id for r in _runs_of(client, "monitor/on-new-data")}
    incoming = world["root"] / "incoming.csv"
    world["rows"](incoming, 80, seed=11)
    landed = world["repo"] / "inbox" / "drop-2026-12-02.csv"
    shutil.copy(incoming, landed.with_name(".partial"))  # hidden while copying: not a drop yet
    (landed.with_name(".partial")).rename(landed)
    judged = _new_final_run(client, "monitor/on-new-data", known)
    assert judged.parameters["drop"] == str(landed.resolve())
    assert judged.parameters["event"] == "textclf.inbox.file"
    assert judged.state.is_completed(), judged.state.message
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(world["settings"].mlflow_url)
    experiment = mlflow.get_experiment_by_name("textclf-monitor").experiment_id
    (run,) = mlflow.search_runs([experiment], f"tags.`prefect.flow_run_id` = '{judged.id}'")
    assert run.data.tags["monitor.drop"] == str(landed.resolve())
    assert run.data.metrics["monitor.rows"] + run.data.metrics["monitor.seen_rows"] == len(pd.read_csv(landed))
