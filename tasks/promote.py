"""promote: register the model with its evidence and model card, then the champion/challenger gate (audited)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import DEFAULT
from prefect.runtime import deployment, flow_run

from textclf import stages
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport
from textclf.lineage import Lineage
from textclf.promotion import PromotionOutcome
from textclf.tracking import TrackedRun
from textclf_tasks.notify import notify_promotion


def prefect_trigger(cfg: PipelineConfig) -> str:
    """The audit trail's trigger: the config's, else what Prefect knows (the scheduler tags its runs)."""
    if cfg.registry.trigger:
        return cfg.registry.trigger
    if not deployment.id:
        return f"flow-run:{flow_run.name or 'local'}"
    kind = "schedule" if "auto-scheduled" in (flow_run.tags or []) else "deployment-run"
    return f"{kind}:{deployment.name}:{flow_run.name}"


def _report(cfg: PipelineConfig, outcome: PromotionOutcome) -> PromotionOutcome:
    """The decision as Prefect artifacts and a log line; a notification when the champion moved."""
    verdict = f"promoted to @{cfg.registry.champion_alias}" if outcome.promoted else "not promoted"
    create_markdown_artifact(
        f"## Promotion\n\nversion **{outcome.version}** of `{outcome.name}`: {verdict}\n\n"
        f"- reason: {outcome.reason}\n- previous champion: {outcome.previous_champion or 'none'}\n"
        f"- trigger: {outcome.trigger}\n- audit record: run `{outcome.audit_run_id}`\n"
        f"- model card: `{outcome.model_card}`\n",
        key="promotion-decision",
    )
    get_run_logger().info("registered %s v%s, promoted=%s (%s)", outcome.name, outcome.version, outcome.promoted, outcome.reason)
    if outcome.version_url:
        create_link_artifact(
            outcome.version_url,
            link_text=f"{outcome.name} v{outcome.version}",
            key="registered-version",
            description="the registered model version in MLflow",
        )
    if outcome.promoted:
        notify_promotion(cfg, outcome)
    return outcome


# Persisted per flow run: a retried flow run never registers the same model twice.
@task(name="promote", retries=1, retry_delay_seconds=10, cache_policy=DEFAULT, persist_result=True)
def promote(
    cfg: PipelineConfig,
    run: TrackedRun,
    model_dir: str,
    report: EvalReport,
    data: stages.DataRef,
    out_dir: Path,
    lineage: Lineage,
) -> PromotionOutcome:
    outcome = stages.promote(cfg, run, model_dir, report, data, out_dir, lineage, prefect_trigger(cfg), "prefect")
    return _report(cfg, outcome)


@task(name="promote-student", retries=1, retry_delay_seconds=10, cache_policy=DEFAULT, persist_result=True)
def promote_student(
    cfg: PipelineConfig,
    student: stages.DistillOutcome,
    evaluated: stages.StudentEvaluation,
    data: stages.DataRef,
    lineage: Lineage,
    teacher: PromotionOutcome | None,
) -> PromotionOutcome:
    outcome = stages.promote_student(cfg, student, evaluated, data, lineage, teacher, prefect_trigger(cfg), "prefect")
    return _report(cfg, outcome)
