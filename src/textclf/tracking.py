"""MLflow runs and metric sinks. One MLflow run per pipeline run; other code gets its run id."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Protocol

from mlflow.tracking import MlflowClient

from textclf.config import PipelineConfig


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
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key=k, value=float(v), timestamp=now, step=step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)


class FanoutSink:
    def __init__(self, *sinks: MetricSink):
        self.sinks = sinks

    def log(self, metrics: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(metrics, step)


def client_for(cfg: PipelineConfig) -> MlflowClient:
    uri = cfg.mlflow_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, cfg: PipelineConfig) -> str:
    found = client.get_experiment_by_name(cfg.tracking.experiment)
    if found is not None:
        return found.experiment_id
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    return client.create_experiment(cfg.tracking.experiment, artifact_location=cfg.artifact_root())


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the code that runs, or 'unknown' outside a git checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def start_run(cfg: PipelineConfig, run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Create the pipeline's MLflow run with the whole config as params; returns its id."""
    client = client_for(cfg)
    experiment_id = ensure_experiment(client, cfg)
    run = client.create_run(experiment_id, run_name=run_name, tags={**git_state(), **(tags or {})})
    from mlflow.entities import Param

    params = [Param(k, v[:6000]) for k, v in sorted(cfg.flat().items())]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    client.log_text(run.info.run_id, _config_yaml(cfg), "config.yaml")
    return run.info.run_id


def _config_yaml(cfg: PipelineConfig) -> str:
    from textclf.config import dump_yaml

    return dump_yaml(cfg)


def log_metrics(cfg: PipelineConfig, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    MlflowSink(cfg.mlflow_uri(), run_id).log(metrics, step or 0)


def set_tags(cfg: PipelineConfig, run_id: str, tags: dict[str, str]) -> None:
    client = client_for(cfg)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def log_artifacts(cfg: PipelineConfig, run_id: str, local: Path, artifact_path: str | None = None) -> None:
    client = client_for(cfg)
    if Path(local).is_dir():
        client.log_artifacts(run_id, str(local), artifact_path)
    else:
        client.log_artifact(run_id, str(local), artifact_path)


def end_run(cfg: PipelineConfig, run_id: str, status: str = "FINISHED") -> None:
    client_for(cfg).set_terminated(run_id, status=status)


# --- lineage: where a run's (and a model version's) code and data came from --------------------------------

LINEAGE_PREFIXES = ("git.", "data.", "prefect.")


def log_datasets(cfg: PipelineConfig, run_id: str, splits_path: str | Path, name: str,
                 digests: dict[str, str], rows: dict[str, int]) -> None:
    """One MLflow dataset input per split (digest = content digest), the `mlflow.log_input` record."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for split, digest in digests.items():
        uri = (Path(splits_path) / split).resolve().as_uri()
        entity = Dataset(name=f"{name}-{split}", digest=digest, source_type="local",
                         source=json.dumps({"uri": uri}), schema=None,
                         profile=json.dumps({"num_rows": rows.get(split, 0)}))
        inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", split)]))
    client_for(cfg).log_inputs(run_id, datasets=inputs)


def record_data_lineage(cfg: PipelineConfig, run_id: str, splits_path: str | Path, digest: str,
                        version_tags: dict[str, str]) -> dict[str, str]:
    """Tag the run with the data version and digest and log the splits as dataset inputs."""
    from datasets import load_from_disk

    from textclf.data.sources import content_digest

    splits = load_from_disk(str(splits_path))
    digests = {split: content_digest(ds) for split, ds in splits.items()}
    tags = {**version_tags, "data.digest": digest,
            **{f"data.digest.{split}": value for split, value in digests.items()}}
    set_tags(cfg, run_id, tags)
    name = Path(cfg.data.source).name or cfg.data.source
    log_datasets(cfg, run_id, splits_path, name, digests, {k: len(v) for k, v in splits.items()})
    return tags


def lineage_tags(cfg: PipelineConfig, run_id: str) -> dict[str, str]:
    """The run's lineage tags (git, data, prefect) plus its id: what a registered version carries."""
    tags = client_for(cfg).get_run(run_id).data.tags
    return {k: v for k, v in sorted(tags.items()) if k.startswith(LINEAGE_PREFIXES)} | {"mlflow.run_id": run_id}


def describe_lineage(cfg: PipelineConfig, model_uri: str) -> dict:
    """Where a model came from: registry version, run, commit, data version and digests, flow run, config."""
    from textclf.registry import resolve_version

    client = client_for(cfg)
    version = None
    if model_uri.startswith("models:/"):
        version = resolve_version(cfg, model_uri)
        run_id = version.run_id
    elif model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
    else:
        from textclf.errors import ModelNotFound

        raise ModelNotFound(f"{model_uri}: lineage needs a models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID URI")
    run = client.get_run(run_id)
    tags = run.data.tags
    datasets = [{"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source,
                 "context": {t.key: t.value for t in d.tags}.get("mlflow.data.context", "")}
                for d in (run.inputs.dataset_inputs if run.inputs else [])]
    return {
        "model": model_uri,
        "registered": ({"name": version.name, "version": version.version, "tags": dict(version.tags)}
                       if version else None),
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "git_commit": tags.get("git.commit", "unknown"),
        "git_dirty": tags.get("git.dirty", "unknown"),
        "data_source": tags.get("data.source", "unknown"),
        "data_dvc_md5": tags.get("data.dvc_md5", "unknown"),
        "data_source_md5": tags.get("data.source_md5", "unknown"),
        "data_digest": tags.get("data.digest", "unknown"),
        "datasets": datasets,
        "prefect_flow_run_id": tags.get("prefect.flow_run_id", "none"),
        "config": f"runs:/{run_id}/config.yaml",
        "params": dict(run.data.params),
    }
