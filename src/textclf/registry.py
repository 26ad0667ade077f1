"""MLflow Model Registry: log and register a trained classifier, pick the champion, load by URI."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow.artifacts
from mlflow.exceptions import MlflowException

from textclf.config import PipelineConfig
from textclf.errors import ModelNotFound
from textclf.serving import load_pyfunc, save_pyfunc
from textclf.tracking import client_for

MODEL_ARTIFACT_PATH = "model"


@dataclass
class RegisteredVersion:
    name: str
    version: str
    uri: str


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    candidate_version: str
    previous_champion: str | None

    def as_tags(self) -> dict[str, str]:
        return {f"promotion.{k}": str(v) for k, v in asdict(self).items()}


def champion_uri(cfg: PipelineConfig) -> str:
    return f"models:/{cfg.registry.model_name}@{cfg.registry.champion_alias}"


def register_model(cfg: PipelineConfig, run_id: str, model_dir: str | Path,
                   tags: dict[str, str] | None = None) -> RegisteredVersion:
    """Log the model folder as a pyfunc model to the run and create a registry version from it."""
    client = client_for(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        packaged = save_pyfunc(Path(model_dir), Path(tmp) / MODEL_ARTIFACT_PATH)
        client.log_artifacts(run_id, str(packaged), MODEL_ARTIFACT_PATH)
    name = cfg.registry.model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Text classifier trained by textclf.")
    version = client.create_model_version(
        name=name, source=f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", run_id=run_id, tags=tags or {}
    )
    return RegisteredVersion(name=name, version=str(version.version), uri=f"models:/{name}/{version.version}")


def current_champion(cfg: PipelineConfig):
    """The model version holding the champion alias, or None."""
    try:
        return client_for(cfg).get_model_version_by_alias(cfg.registry.model_name, cfg.registry.champion_alias)
    except MlflowException:
        return None


def decide_promotion(cfg: PipelineConfig, candidate: RegisteredVersion, metrics: dict[str, float]) -> PromotionDecision:
    """Absolute thresholds first; then the candidate must not be worse than the champion's test accuracy."""
    champion = current_champion(cfg)
    previous = champion.version if champion else None
    failed = []
    if metrics.get("test_accuracy", 0.0) < cfg.evaluate.min_accuracy:
        failed.append(f"test_accuracy {metrics.get('test_accuracy', 0):.4f} < min_accuracy {cfg.evaluate.min_accuracy}")
    if metrics.get("test_macro_f1", 0.0) < cfg.evaluate.min_macro_f1:
        failed.append(f"test_macro_f1 {metrics.get('test_macro_f1', 0):.4f} < min_macro_f1 {cfg.evaluate.min_macro_f1}")
    if failed:
        return PromotionDecision(False, "; ".join(failed), candidate.version, previous)
    if champion is None:
        return PromotionDecision(True, "first model that passes the thresholds", candidate.version, None)
    run = client_for(cfg).get_run(champion.run_id) if champion.run_id else None
    best = run.data.metrics.get("test_accuracy") if run else None
    if best is not None and metrics.get("test_accuracy", 0.0) < best:
        return PromotionDecision(False, f"test_accuracy {metrics['test_accuracy']:.4f} below champion "
                                 f"v{previous}'s {best:.4f}", candidate.version, previous)
    return PromotionDecision(True, f"test_accuracy {metrics.get('test_accuracy', 0):.4f} >= champion "
                             f"v{previous}'s {best}", candidate.version, previous)


def apply_promotion(cfg: PipelineConfig, decision: PromotionDecision) -> None:
    client = client_for(cfg)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(cfg.registry.model_name, decision.candidate_version, key, value)
    if decision.promoted:
        client.set_registered_model_alias(cfg.registry.model_name, cfg.registry.champion_alias,
                                          decision.candidate_version)


def resolve_version(cfg: PipelineConfig, uri: str):
    """`models:/name@alias` or `models:/name/version` -> the registry's ModelVersion."""
    body = uri.removeprefix("models:/")
    client = client_for(cfg)
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, number = body.rpartition("/")
        return client.get_model_version(name, number)
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise ModelNotFound(f"model {uri} not found in {cfg.mlflow_uri()}: {first}; train one with "
                            "`textclf run` or pass --model") from None


def download_model(cfg: PipelineConfig, uri: str, dest: Path | None = None) -> Path:
    """Fetch an MLflow model (models:/..., runs:/... or a local folder) to a local folder."""
    if Path(uri).is_dir():
        return Path(uri)
    if uri.startswith("models:/"):
        uri = resolve_version(cfg, uri).source
    try:
        # Explicit URIs: models:/ resolution in mlflow.artifacts ignores registry_uri.
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dest) if dest else None, tracking_uri=cfg.mlflow_uri())
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise ModelNotFound(f"model {uri} could not be downloaded from {cfg.mlflow_uri()}: {first}") from None
    return Path(local)


def load_model(cfg: PipelineConfig, uri: str):
    return load_pyfunc(download_model(cfg, uri))


def register_and_promote(cfg: PipelineConfig, run_id: str, model_dir: str | Path, metrics: dict[str, float],
                         tags: dict[str, str]) -> dict:
    """Register the trained model with its lineage tags, then decide and apply the champion alias."""
    version_tags = {**tags, **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}}
    version = register_model(cfg, run_id, model_dir, version_tags)
    decision = decide_promotion(cfg, version, metrics)
    apply_promotion(cfg, decision)
    return {"name": version.name, "version": version.version, "uri": version.uri, **asdict(decision)}
