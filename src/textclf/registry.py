"""MLflow Model Registry: register a model with its evidence and card, find, download and load versions.

Decisions about the champion alias are textclf.promotion's; the rules of the gate are textclf.gate's.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow.artifacts
from mlflow.exceptions import MlflowException

from textclf.config import MlflowTarget, RegistryTarget
from textclf.errors import ModelNotFound, TextclfError
from textclf.evaluate import REPORT_FILE, EvalReport
from textclf.gate import gate_metrics
from textclf.model_card import CardInputs, render_model_card
from textclf.modeling import load_trained
from textclf.serving import classifier_folder, save_pyfunc
from textclf.tracking import client_for, ui_base

MODEL_ARTIFACT_PATH = "model"
EVAL_ARTIFACT_PATH = "evaluation"


class ChampionUnreadable(TextclfError):
    """The champion alias could not be read (not: does not exist)."""

    exit_code = 6


@dataclass
class RegisteredVersion:
    name: str
    version: str
    uri: str


def champion_uri(reg: RegistryTarget) -> str:
    return f"models:/{reg.name}@{reg.alias}"


def model_version_url(target: MlflowTarget, name: str, version: str) -> str | None:
    base = ui_base(target.uri)
    return f"{base}/#/models/{name}/versions/{version}" if base else None


def register_model(
    reg: RegistryTarget, run_id: str, model_dir: str | Path, tags: dict[str, str] | None = None
) -> RegisteredVersion:
    """Log the model folder as a pyfunc model (models-from-code, no pickle) to the run and create a registry version from it.

    Idempotent per training run and registered name: a retried task or flow run gets the version it registered
    before, not a second one.
    """
    client = client_for(reg.mlflow)
    earlier = registered_from(reg, run_id)
    if earlier is not None:
        return earlier
    artifact_path, n = MODEL_ARTIFACT_PATH, 1
    while client.list_artifacts(run_id, artifact_path):  # a further model from the same run (e.g. a student)
        n += 1
        artifact_path = f"{MODEL_ARTIFACT_PATH}-{n}"
    with tempfile.TemporaryDirectory() as tmp:
        packaged = save_pyfunc(Path(model_dir), Path(tmp) / MODEL_ARTIFACT_PATH)
        client.log_artifacts(run_id, str(packaged), artifact_path)
    name = reg.name
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name,
                description="Text classifier trained by textclf; promotion "
                f"history in experiment {reg.settings.audit_experiment}.",
            )
        except MlflowException:  # created by a concurrent flow
            client.get_registered_model(name)
    tags = {**(tags or {}), **label_tags(Path(model_dir))}
    version = client.create_model_version(name=name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags)
    return RegisteredVersion(name=name, version=str(version.version), uri=f"models:/{name}/{version.version}")


LABELS_TAG = "model.labels"  # the version's classes in id order (JSON), readable without downloading it


def label_tags(model_dir: Path) -> dict[str, str]:
    """The model's label set from its config.json (id2label), as a version tag; none if the folder has none."""
    config = model_dir / "config.json"
    if not config.is_file():
        return {}
    id2label = json.loads(config.read_text()).get("id2label") or {}
    names = [id2label[k] for k in sorted(id2label, key=int)]
    return {LABELS_TAG: json.dumps(names)} if names else {}


def registered_from(reg: RegistryTarget, run_id: str) -> RegisteredVersion | None:
    """The version of `reg.name` registered from MLflow run `run_id`, if any (the oldest, should there be more)."""
    try:
        found = client_for(reg.mlflow).search_model_versions(f"name = '{reg.name}' and run_id = '{run_id}'")
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if not found:
        return None
    first = min(found, key=lambda mv: int(mv.version))
    return RegisteredVersion(name=reg.name, version=str(first.version), uri=f"models:/{reg.name}/{first.version}")


def attach_evaluation(
    reg: RegistryTarget, version: RegisteredVersion, report: EvalReport, run_id: str, eval_dir: Path | None = None
) -> str:
    """Evaluation evidence and the model card on the version: tags, run artifacts, description. Returns the card URI."""
    client = client_for(reg.mlflow)
    prefix = f"{EVAL_ARTIFACT_PATH}/v{version.version}"
    if eval_dir is not None and Path(eval_dir).is_dir():
        client.log_artifacts(run_id, str(eval_dir), prefix)
    else:
        client.log_dict(run_id, report.to_dict(), f"{prefix}/{REPORT_FILE}")
    evidence = {f"eval.{k}": f"{v:.6g}" for k, v in report.metrics.items()}
    evidence["eval.report"] = f"runs:/{run_id}/{prefix}/{REPORT_FILE}"
    evidence["eval.split"] = f"{report.split} ({report.n} texts)"
    for key, value in evidence.items():
        client.set_model_version_tag(version.name, version.version, key, value)
    card_uri = _attach_model_card(reg, version, report, run_id, prefix)
    client.set_model_version_tag(version.name, version.version, "model_card", card_uri)
    return card_uri


def _attach_model_card(reg: RegistryTarget, version: RegisteredVersion, report: EvalReport, run_id: str, eval_prefix: str) -> str:
    client = client_for(reg.mlflow)
    run = client.get_run(run_id)
    mv = client.get_model_version(version.name, version.version)
    artifacts = {
        "evaluation report": f"runs:/{run_id}/{eval_prefix}/{REPORT_FILE}",
        "confusion matrix": f"runs:/{run_id}/{eval_prefix}/confusion_matrix.png",
        "reliability diagram": f"runs:/{run_id}/{eval_prefix}/reliability_diagram.png",
        "most confident mistakes": f"runs:/{run_id}/{eval_prefix}/confident_mistakes.md",
        "data validation report": f"runs:/{run_id}/validation",
        "config": f"runs:/{run_id}/config.yaml",
        "promotion history": f"`textclf registry history {version.name}`",
    }
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
    card = render_model_card(
        CardInputs(
            name=version.name,
            version=version.version,
            run_id=run_id,
            created=created,
            labels=report.labels,
            metrics=report.metrics,
            per_class=report.per_class,
            tags={**run.data.tags, **(mv.tags or {})},
            params=run.data.params,
            artifacts=artifacts,
        )
    )
    path = f"model_card/{version.name}-v{version.version}.md"
    client.log_text(run_id, card, path)
    uri = f"runs:/{run_id}/{path}"
    client.update_model_version(
        version.name,
        version.version,
        description=(
            f"Model card: {uri}. Evaluation: runs:/{run_id}/{eval_prefix}. Promotion decisions: tags "
            f"`promotion.*` and experiment `{reg.settings.audit_experiment}`."
        ),
    )
    return uri


def current_champion(reg: RegistryTarget):
    """The model version holding the champion alias, or None when the model or the alias does not exist.

    Fails closed: any other error (server down, permissions) raises, so no decision is taken on a champion
    that could not be read.
    """
    try:
        return client_for(reg.mlflow).get_model_version_by_alias(reg.name, reg.alias)
    except MlflowException as err:
        if _missing(err):
            return None
        first = " ".join(str(err).split())[:300]
        raise ChampionUnreadable(
            f"could not read @{reg.alias} of {reg.name} from {reg.mlflow.uri}: {first}; no champion decision "
            "is taken without it: check the tracking server and retry"
        ) from None


def _missing(err: MlflowException) -> bool:
    """The registered model or its alias does not exist (MLflow answers an unknown alias with 400)."""
    if err.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    text = str(err).lower()
    return err.error_code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text


def version_of(mv) -> str | None:
    return str(mv.version) if mv is not None else None


def recorded_metrics(mv) -> dict[str, float]:
    """The evaluation metrics stored on a version at registration (tags `eval.*`)."""
    out = {}
    for key, value in (mv.tags or {}).items():
        if key.startswith("eval.") and key not in ("eval.report", "eval.split"):
            try:
                out[key.removeprefix("eval.")] = float(value)
            except ValueError:
                continue
    return gate_metrics(out)


def resolve_version(target: MlflowTarget, uri: str):
    """`models:/name@alias` or `models:/name/version` -> the registry's ModelVersion."""
    body = uri.removeprefix("models:/")
    client = client_for(target)
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, number = body.rpartition("/")
        return client.get_model_version(name, number)
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise ModelNotFound(
            f"model {uri} not found in {target.uri}: {first}; train one with `textclf run` or pass --model"
        ) from None


def download_model(target: MlflowTarget, uri: str, dest: Path | None = None) -> Path:
    """Fetch an MLflow model (models:/..., runs:/... or a local folder) to a local folder."""
    if Path(uri).is_dir():
        return Path(uri)
    if uri.startswith("models:/"):
        uri = resolve_version(target, uri).source
    try:
        # Explicit URIs: models:/ resolution in mlflow.artifacts ignores registry_uri.
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dest) if dest else None, tracking_uri=target.uri
        )
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise ModelNotFound(f"model {uri} could not be downloaded from {target.uri}: {first}") from None
    return Path(local)


def download_registered(target: MlflowTarget, uri: str, dest: Path) -> tuple[Path, str]:
    """A `models:/` URI's Hugging Face model folder and its "name/version" (e.g. a distillation teacher)."""
    version = resolve_version(target, uri)
    local = download_model(target, f"models:/{version.name}/{version.version}", dest)  # pinned: an alias may move
    return classifier_folder(local, uri), f"{version.name}/{version.version}"


def load_registered(target: MlflowTarget, uri: str, dest: Path):
    """(model, tokenizer, folder) of a model URI (`models:/`, `runs:/` or a local folder): its artifacts are
    downloaded and the Hugging Face folder in them loads from safetensors; the model's code file is never run."""
    if uri.startswith("models:/"):
        folder, _ = download_registered(target, uri, dest)
    else:
        folder = classifier_folder(download_model(target, uri, dest), uri)
    model, tokenizer = load_trained(folder)
    return model, tokenizer, folder
