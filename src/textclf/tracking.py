"""MLflow runs and metric sinks (the lowest layer: imports no registry). One MLflow run per pipeline run;
other code gets its `TrackedRun` handle."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from textclf.config import MlflowTarget


class MetricSink(Protocol):
    """Where training metrics go; only rank 0 ever holds a real one."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...


class NullSink:
    def log(self, metrics: dict[str, float], step: int) -> None:
        return None


class JsonlSink:
    """Append-only metrics file in the run folder (the loss curve survives any tracking outage)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")


class MlflowSink:
    """Metrics into an existing MLflow run, by id."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.run_id = run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key=k, value=float(v), timestamp=now, step=step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)


class FanoutSink:
    def __init__(self, *sinks: MetricSink):
        self.sinks = sinks

    def log(self, metrics: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(metrics, step)


def client_for(target: MlflowTarget) -> MlflowClient:
    return MlflowClient(tracking_uri=target.uri, registry_uri=target.uri)


def ensure_experiment(client: MlflowClient, target: MlflowTarget) -> str:
    found = client.get_experiment_by_name(target.experiment)
    if found is not None:
        return found.experiment_id
    if target.uri.startswith("sqlite:///"):
        Path(target.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(target.experiment, artifact_location=target.artifact_root)


def ui_base(uri: str) -> str | None:
    """The MLflow UI behind an http(s) tracking URI; None for a local store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the code that runs, or 'unknown' outside a git checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


@dataclass(frozen=True)
class TrackedRun:
    """A handle on one MLflow run: small and picklable, so tasks hand it on instead of a config + id."""

    uri: str
    run_id: str
    experiment_id: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if metrics:
            MlflowSink(self.uri, self.run_id).log(metrics, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        if tags:
            self.client().log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifacts(self, local: Path, artifact_path: str | None = None) -> None:
        if Path(local).is_dir():
            self.client().log_artifacts(self.run_id, str(local), artifact_path)
        else:
            self.client().log_artifact(self.run_id, str(local), artifact_path)

    def tags(self) -> dict[str, str]:
        return dict(self.client().get_run(self.run_id).data.tags)

    def end(self, status: str = "FINISHED") -> None:
        self.client().set_terminated(self.run_id, status=status)

    @property
    def url(self) -> str | None:
        """The run's page in the MLflow UI of a tracking server; None for a local store."""
        base = ui_base(self.uri)
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}" if base else None

    def link(self) -> str:
        """A clickable link for a tracking server, else where to find the run in `make mlflow-ui`."""
        if self.url:
            return f"[{self.run_id}]({self.url})"
        return (
            f"`{self.run_id}` (open http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{self.run_id} "
            f"after `make mlflow-ui`; store {self.uri})"
        )


def start_run(
    target: MlflowTarget,
    params: dict[str, str],
    documents: dict[str, str],
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Create a run with `params` (e.g. the whole config, flattened) and text `documents` (name -> text)."""
    client = client_for(target)
    experiment_id = ensure_experiment(client, target)
    run = client.create_run(experiment_id, run_name=run_name, tags={**git_state(), **(tags or {})})
    batch = [Param(k, v[:6000]) for k, v in sorted(params.items())]
    for start in range(0, len(batch), 100):
        client.log_batch(run.info.run_id, params=batch[start : start + 100])
    for name, text in documents.items():
        client.log_text(run.info.run_id, text, name)
    return TrackedRun(target.uri, run.info.run_id, experiment_id)


def run_of(target: MlflowTarget, run_id: str) -> TrackedRun:
    """The handle of an existing run (e.g. `--mlflow-run-id` on the command line)."""
    return TrackedRun(target.uri, run_id, client_for(target).get_run(run_id).info.experiment_id)
