"""MLflow Model Registry: register with evidence, the champion/challenger gate (compare-and-set), human actions.

Every change of the champion alias made through here is recorded by textclf.audit.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow.artifacts
from mlflow.exceptions import MlflowException

from textclf import audit
from textclf.audit import DecisionRecord, promotion_lock
from textclf.config import EvalConfig, MlflowTarget, RegistryTarget
from textclf.errors import ModelNotFound, TextclfError
from textclf.evaluate import REPORT_FILE, EvalReport, evaluate_classifier
from textclf.model_card import CardInputs, render_model_card
from textclf.serving import load_pyfunc, save_pyfunc
from textclf.tracking import client_for, ui_base

MODEL_ARTIFACT_PATH = "model"
EVAL_ARTIFACT_PATH = "evaluation"
GATE_KEYS = ("accuracy", "macro_f1", "latency_p95_ms")


class PromotionRefused(TextclfError):
    """A human promotion or rollback that cannot be done as asked."""


@dataclass
class RegisteredVersion:
    name: str
    version: str
    uri: str


@dataclass
class PromotionOutcome:
    """What the promote stage did: the registered version, its card, and the gate's audited decision."""

    name: str
    version: str
    uri: str
    model_card: str
    promoted: bool
    reason: str
    previous_champion: str | None
    champion: str | None
    audit_run_id: str
    trigger: str
    version_url: str | None = None  # the version's page in the MLflow UI of a tracking server

    def to_dict(self) -> dict:
        return asdict(self)


def champion_uri(reg: RegistryTarget) -> str:
    return f"models:/{reg.name}@{reg.alias}"


def model_version_url(target: MlflowTarget, name: str, version: str) -> str | None:
    base = ui_base(target.uri)
    return f"{base}/#/models/{name}/versions/{version}" if base else None


def register_model(
    reg: RegistryTarget, run_id: str, model_dir: str | Path, tags: dict[str, str] | None = None
) -> RegisteredVersion:
    """Log the model folder as a pyfunc model to the run and create a registry version from it."""
    client = client_for(reg.mlflow)
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
    version = client.create_model_version(name=name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags or {})
    return RegisteredVersion(name=name, version=str(version.version), uri=f"models:/{name}/{version.version}")


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
    """The model version holding the champion alias, or None."""
    try:
        return client_for(reg.mlflow).get_model_version_by_alias(reg.name, reg.alias)
    except MlflowException:
        return None


def _version_of(mv) -> str | None:
    return str(mv.version) if mv is not None else None


def thresholds(cfg: EvalConfig) -> dict:
    return {
        "min_accuracy": cfg.min_accuracy,
        "min_macro_f1": cfg.min_macro_f1,
        "max_latency_p95_ms": cfg.max_latency_p95_ms,
        "promotion_metric": cfg.promotion_metric,
        "min_improvement": cfg.min_improvement,
    }


def threshold_failures(metrics: dict[str, float], cfg: EvalConfig) -> list[str]:
    """The absolute thresholds `metrics` (un-prefixed) fail, as readable reasons."""
    failed = []
    if metrics.get("accuracy", 0.0) < cfg.min_accuracy:
        failed.append(f"accuracy {metrics.get('accuracy', 0.0):.4f} < min_accuracy {cfg.min_accuracy}")
    if metrics.get("macro_f1", 0.0) < cfg.min_macro_f1:
        failed.append(f"macro_f1 {metrics.get('macro_f1', 0.0):.4f} < min_macro_f1 {cfg.min_macro_f1}")
    latency = metrics.get("latency_p95_ms")
    if cfg.max_latency_p95_ms is not None and (latency is None or latency > cfg.max_latency_p95_ms):
        shown = "missing" if latency is None else f"{latency:.1f}ms"
        failed.append(f"latency_p95 {shown} > max_latency_p95_ms {cfg.max_latency_p95_ms:g}")
    return failed


def gate_decision(
    candidate: dict[str, float], champion: dict[str, float] | None, cfg: EvalConfig, champion_version: str | None = None
) -> tuple[bool, str]:
    """(promote?, reason): absolute thresholds first, then the margin over the champion measured now."""
    failed = threshold_failures(candidate, cfg)
    if failed:
        return False, "fails thresholds: " + "; ".join(failed)
    if champion is None:
        return True, "passes thresholds; no champion yet"
    key = cfg.promotion_metric
    gain = candidate.get(key, 0.0) - champion.get(key, 0.0)
    versus = (
        f"{key} {candidate.get(key, 0.0):.4f} vs champion v{champion_version} {champion.get(key, 0.0):.4f} "
        f"(re-evaluated now): {gain:+.4f}"
    )
    if gain < cfg.min_improvement:
        return False, f"{versus} < required margin {cfg.min_improvement:g}"
    return True, f"passes thresholds; {versus} >= required margin {cfg.min_improvement:g}"


def evaluate_version(reg: RegistryTarget, gate: EvalConfig, version: str, data_dir: str | Path, batch_size: int) -> EvalReport:
    """Download a registered version and evaluate it now on `data_dir`'s test split (same code as the candidate)."""
    with tempfile.TemporaryDirectory() as tmp:
        pyfunc = load_model(reg.mlflow, f"models:/{reg.name}/{version}", Path(tmp))
        inner = pyfunc.unwrap_python_model()
        return evaluate_classifier(inner.model, inner.tokenizer, data_dir, "test", batch_size=batch_size, settings=gate)


def _gate_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in sorted(metrics) if not k.startswith("texts_per_s")}


def _set_champion(reg: RegistryTarget, record: DecisionRecord, expected: str | None) -> DecisionRecord:
    """Under the lock: compare-and-set the alias to record.candidate_version, then append the audit record."""
    client = client_for(reg.mlflow)
    name, alias = reg.name, reg.alias
    if _version_of(current_champion(reg)) != expected:  # re-check right before setting
        raise PromotionRefused(f"champion of {name} changed concurrently (expected {expected}); retry")
    if record.promoted:
        client.set_registered_model_alias(name, alias, record.candidate_version)
        if _version_of(current_champion(reg)) != record.candidate_version:  # a writer without the lock won
            raise PromotionRefused(f"champion of {name} was set by another writer during promotion; retry")
    try:
        record = audit.append_record(reg, record)
    except Exception:
        if record.promoted:  # never leave an unaudited alias change behind
            if expected:
                client.set_registered_model_alias(name, alias, expected)
            else:
                client.delete_registered_model_alias(name, alias)
        raise
    tags = {
        "promotion.decision": record.decision,
        "promotion.reason": record.reason[:5000],
        "promotion.time": record.time,
        "promotion.trigger": record.trigger,
        "promotion.previous_champion": record.previous_champion or "",
        "promotion.audit_run_id": record.audit_run_id,
        "promotion.seq": str(record.seq),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, record.candidate_version, key, value)
    return record


def promote_if_better(
    reg: RegistryTarget,
    gate: EvalConfig,
    candidate: RegisteredVersion,
    report: EvalReport,
    data_dir: str | Path,
    trigger: str,
    actor: str = "pipeline",
    candidate_run_id: str | None = None,
    *,
    batch_size: int,
) -> DecisionRecord:
    """The gate: re-evaluate the champion on the same test split, decide, compare-and-set, audit.

    The champion is evaluated outside the lock (slow); the lock only covers re-check + set + record.
    If the champion changed meanwhile, evaluate the new one (up to registry.cas_retries times).
    """
    candidate_metrics = _gate_metrics(report.metrics)
    retries = reg.settings.cas_retries
    for _ in range(retries + 1):
        seen = _version_of(current_champion(reg))
        champion = None
        if seen is not None and seen != candidate.version:
            champion = _gate_metrics(evaluate_version(reg, gate, seen, data_dir, batch_size).metrics)
        promoted, reason = gate_decision(candidate_metrics, champion, gate, seen)
        record = DecisionRecord(
            model_name=candidate.name,
            action="gate",
            promoted=promoted,
            candidate_version=candidate.version,
            previous_champion=seen,
            champion_after=candidate.version if promoted else seen,
            reason=reason,
            trigger=trigger,
            actor=actor,
            candidate_metrics=candidate_metrics,
            champion_metrics=champion or {},
            thresholds=thresholds(gate),
            candidate_run_id=candidate_run_id,
        )
        with promotion_lock(reg):
            if _version_of(current_champion(reg)) != seen:
                continue  # lost the race while evaluating: compare against the new champion
            return _set_champion(reg, record, seen)
    with promotion_lock(reg):
        now = _version_of(current_champion(reg))
        record = DecisionRecord(
            model_name=candidate.name,
            action="gate",
            promoted=False,
            candidate_version=candidate.version,
            previous_champion=now,
            champion_after=now,
            trigger=trigger,
            actor=actor,
            reason=f"champion changed {retries + 1} times while this candidate was compared; "
            "not promoted (rerun to compare again)",
            candidate_metrics=candidate_metrics,
            thresholds=thresholds(gate),
            candidate_run_id=candidate_run_id,
        )
        return _set_champion(reg, record, now)


def recorded_metrics(mv) -> dict[str, float]:
    """The evaluation metrics stored on a version at registration (tags `eval.*`)."""
    out = {}
    for key, value in (mv.tags or {}).items():
        if key.startswith("eval.") and key not in ("eval.report", "eval.split"):
            try:
                out[key.removeprefix("eval.")] = float(value)
            except ValueError:
                continue
    return _gate_metrics(out)


def evaluated_version(reg: RegistryTarget, version: str):
    """The version, if it exists and carries an evaluation; else a one-line PromotionRefused."""
    name = reg.name
    try:
        mv = client_for(reg.mlflow).get_model_version(name, str(version))
    except MlflowException:
        raise PromotionRefused(
            f"version {version} of model {name} does not exist in {reg.mlflow.uri}; "
            f"list versions with `textclf registry history {name}`"
        ) from None
    if "eval.report" not in (mv.tags or {}):
        raise PromotionRefused(
            f"version {version} of model {name} has no evaluation (no eval.report tag); "
            "only versions registered by the pipeline with a test evaluation can serve"
        )
    return mv


def promote_version(
    reg: RegistryTarget, gate: EvalConfig, version: str, reason: str, trigger: str = "cli", actor: str = "unknown"
) -> DecisionRecord:
    """A person makes `version` the champion (overriding the gate), with a reason; audited."""
    if not reason.strip():
        raise PromotionRefused("a reason is required: --reason 'why this version should serve'")
    mv = evaluated_version(reg, version)
    with promotion_lock(reg):
        current = current_champion(reg)
        if _version_of(current) == str(mv.version):
            raise PromotionRefused(f"version {version} is already @{reg.alias}")
        failed = threshold_failures(recorded_metrics(mv), gate)
        note = f" (overrides failed thresholds: {'; '.join(failed)})" if failed else ""
        record = DecisionRecord(
            model_name=reg.name,
            action="promote",
            promoted=True,
            candidate_version=str(mv.version),
            previous_champion=_version_of(current),
            champion_after=str(mv.version),
            reason=reason.strip() + note,
            trigger=trigger,
            actor=actor,
            candidate_metrics=recorded_metrics(mv),
            champion_metrics=recorded_metrics(current) if current else {},
            thresholds=thresholds(gate),
            candidate_run_id=mv.run_id,
        )
        return _set_champion(reg, record, _version_of(current))


def rollback(reg: RegistryTarget, gate: EvalConfig, reason: str, trigger: str = "cli", actor: str = "unknown") -> DecisionRecord:
    """Restore the champion that served before the current one (per the audit history); audited."""
    if not reason.strip():
        raise PromotionRefused("a reason is required: --reason 'what went wrong with the current champion'")
    name = reg.name
    with promotion_lock(reg):
        current = _version_of(current_champion(reg))
        stack = audit.champion_stack(audit.read_history(reg, name))
        if current is None:
            raise PromotionRefused(f"model {name} has no @{reg.alias}; nothing to roll back")
        if not stack or stack[-1] != current:
            raise PromotionRefused(
                f"@{reg.alias} (v{current}) was not set through textclf, so "
                "there is no audited predecessor; use `textclf registry promote VERSION`"
            )
        if len(stack) < 2:
            raise PromotionRefused(f"v{current} is the first audited champion of {name}; nothing to roll back to")
        target = evaluated_version(reg, stack[-2])
        mv_current = client_for(reg.mlflow).get_model_version(name, current)
        record = DecisionRecord(
            model_name=name,
            action="rollback",
            promoted=True,
            candidate_version=str(target.version),
            previous_champion=current,
            champion_after=str(target.version),
            reason=reason.strip(),
            trigger=trigger,
            actor=actor,
            candidate_metrics=recorded_metrics(target),
            champion_metrics=recorded_metrics(mv_current),
            thresholds=thresholds(gate),
            candidate_run_id=target.run_id,
        )
        return _set_champion(reg, record, current)


def history(reg: RegistryTarget, name: str | None = None) -> list[DecisionRecord]:
    return audit.read_history(reg, name or reg.name)


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
    found = sorted(p.parent for p in local.rglob("config.json") if any(p.parent.glob("*.safetensors")))
    if not found:
        raise ModelNotFound(f"{uri}: the registered model holds no Hugging Face model folder")
    return found[0], f"{version.name}/{version.version}"


def load_model(target: MlflowTarget, uri: str, dest: Path | None = None):
    return load_pyfunc(download_model(target, uri, dest))


def register_and_promote(
    reg: RegistryTarget,
    gate: EvalConfig,
    run_id: str,
    model_dir: str | Path,
    report: EvalReport,
    tags: dict[str, str],
    data_dir: str | Path,
    trigger: str,
    actor: str = "pipeline",
    eval_dir: Path | None = None,
    *,
    batch_size: int,
) -> PromotionOutcome:
    """Register the trained model with its lineage, evidence and card, then run the gate on `data_dir`."""
    version = register_model(reg, run_id, model_dir, tags)
    card = attach_evaluation(reg, version, report, run_id, eval_dir)
    record = promote_if_better(
        reg, gate, version, report, data_dir, trigger, actor, candidate_run_id=run_id, batch_size=batch_size
    )
    return PromotionOutcome(
        name=version.name,
        version=version.version,
        uri=version.uri,
        model_card=card,
        promoted=record.promoted,
        reason=record.reason,
        previous_champion=record.previous_champion,
        champion=record.champion_after,
        audit_run_id=record.audit_run_id,
        trigger=record.trigger,
        version_url=model_version_url(reg.mlflow, version.name, version.version),
    )


def record_json(records: list[DecisionRecord]) -> str:
    return "\n".join(json.dumps({**r.to_dict(), "decision": r.decision}, sort_keys=True) for r in records)
