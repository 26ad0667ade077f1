"""Monitoring history in MLflow: one run per monitoring result in the experiment `<tracking.experiment>-monitor`,
tagged with the champion version it judged; the version itself carries `monitor.since` and `monitor.latest.*`,
and its model card's monitoring section is rewritten from them."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException

from textclf.audit import now_iso
from textclf.config import MlflowTarget, PipelineConfig
from textclf.model_card import with_monitoring
from textclf.monitor.plot import HistoryPoint
from textclf.monitor.result import MonitorResult
from textclf.tracking import TrackedRun, client_for, start_run

ARTIFACT_PATH = "monitor"
# The few scores the model card and the version tags show (the run has them all as metrics).
LATEST_KEYS = ("embedding_p_value", "accuracy", "accuracy_drop", "macro_f1", "predicted_label_tvd", "rows", "labelled_rows")


def monitor_target(cfg: PipelineConfig) -> MlflowTarget:
    base = cfg.tracking_target()
    return MlflowTarget(base.uri, f"{base.experiment}-monitor", base.artifact_root)


def _decision(result: MonitorResult) -> str:
    return "retrain" if result.decision.retrain else "skipped"


def log_result(cfg: PipelineConfig, result: MonitorResult, folder: Path, tags: dict[str, str] | None = None) -> TrackedRun:
    """The result as a finished MLflow run: config as params, scores as metrics, report and JSON as artifacts."""
    run_tags = {
        "monitor.model_name": result.model_name,
        "monitor.model_version": result.model_version,
        "monitor.champion": result.model,
        "monitor.decision": _decision(result),
        "monitor.findings": ",".join(result.decision.findings) or "none",
        "monitor.drop": result.drop[:500],
        "monitor.reason": result.decision.reason[:5000],
        **(tags or {}),
    }
    params = {k: v for k, v in cfg.flat().items() if k.startswith(("monitor.", "registry.", "data.source"))}
    run = start_run(monitor_target(cfg), params, {}, f"{result.model} {_decision(result)}", run_tags)
    run.log_metrics({f"monitor.{k}": v for k, v in result.scores().items()})
    run.log_artifacts(folder, ARTIFACT_PATH)
    run.end()
    return run


def annotate_version(cfg: PipelineConfig, result: MonitorResult, run: TrackedRun) -> None:
    """monitor.since / monitor.latest.* on the judged version, and its model card's monitoring section."""
    client = client_for(cfg.tracking_target())
    mv = client.get_model_version(result.model_name, result.model_version)
    tags = dict(mv.tags or {})
    scores = result.scores()
    new = {
        "monitor.latest.when": result.started,
        "monitor.latest.decision": _decision(result),
        "monitor.latest.findings": ",".join(result.decision.findings) or "none",
        "monitor.latest.run": run.run_id,
        **{f"monitor.latest.{k}": f"{scores[k]:.4g}" for k in LATEST_KEYS if k in scores},
        "monitor.runs": str(int(tags.get("monitor.runs", "0")) + 1),
    }
    if "monitor.since" not in tags:
        new["monitor.since"] = now_iso()
    for key, value in new.items():
        client.set_model_version_tag(result.model_name, result.model_version, key, value)
    tags.update(new)
    card_uri = tags.get("model_card", "")
    if not card_uri.startswith("runs:/"):
        return  # a version registered without a card: the tags say it all
    run_id, _, path = card_uri.removeprefix("runs:/").partition("/")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except MlflowException:
            return  # the card's run is gone; the version tags still carry the scores
        card = Path(local).read_text(encoding="utf-8")
    client.log_text(run_id, with_monitoring(card, tags), path)


def read_history(cfg: PipelineConfig, model_name: str | None = None) -> list[HistoryPoint]:
    """Every monitoring run, oldest first (of one registry name when given)."""
    target = monitor_target(cfg)
    client = client_for(target)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        return []
    query = f"tags.`monitor.model_name` = '{model_name}'" if model_name else ""
    points = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], query, order_by=["attributes.start_time ASC"], max_results=500, page_token=token
        )
        for run in page:
            m, t = run.data.metrics, run.data.tags
            points.append(
                HistoryPoint(
                    when=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
                    model_version=t.get("monitor.model_version", "?"),
                    drop=t.get("monitor.drop", ""),
                    embedding_p_value=float(m.get("monitor.embedding_p_value", 1.0)),
                    input_drift=bool(m.get("monitor.input_drift", 0.0)),
                    prediction_drift=bool(m.get("monitor.prediction_drift", 0.0)),
                    accuracy=m.get("monitor.accuracy"),
                    accuracy_drop=m.get("monitor.accuracy_drop"),
                    retrain=t.get("monitor.decision") == "retrain",
                    run_id=run.info.run_id,
                )
            )
        token = page.token
        if not token:
            return points
