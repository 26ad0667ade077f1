"""promote: register the model with its evidence and model card, then the champion/challenger gate (audited)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import DEFAULT
from prefect.runtime import deployment, flow_run

from tasks.notify import notify_promotion
from textclf import registry, stages, ui_links
from textclf.config import PipelineConfig
from textclf.evaluate import EvalReport


def prefect_trigger(cfg: PipelineConfig) -> str:
    """The audit trail's trigger: the config's, else what Prefect knows (the scheduler tags its runs)."""
    if cfg.registry.trigger:
        return cfg.registry.trigger
    if not deployment.id:
        return f"flow-run:{flow_run.name or 'local'}"
    kind = "schedule" if "auto-scheduled" in (flow_run.tags or []) else "deployment-run"
    return f"{kind}:{deployment.name}:{flow_run.name}"


# Persisted per flow run: a retried flow run never registers the same model twice.
@task(name="promote", retries=1, retry_delay_seconds=10, cache_policy=DEFAULT, persist_result=True)
def promote(cfg: PipelineConfig, run_id: str, model_dir: str, report: EvalReport, data: stages.DataRef,
            out_dir: Path, tags: dict[str, str]) -> dict:
    result = registry.register_and_promote(cfg, run_id, model_dir, report, tags, data_dir=data.path,
                                           trigger=prefect_trigger(cfg), actor="prefect",
                                           eval_dir=Path(out_dir) / "evaluation")
    verdict = f"promoted to @{cfg.registry.champion_alias}" if result["promoted"] else "not promoted"
    create_markdown_artifact(
        f"## Promotion\n\nversion **{result['version']}** of `{result['name']}`: {verdict}\n\n"
        f"- reason: {result['reason']}\n- previous champion: {result['previous_champion'] or 'none'}\n"
        f"- trigger: {result['trigger']}\n- audit record: run `{result['audit_run_id']}`\n"
        f"- model card: `{result['model_card']}`\n", key="promotion-decision")
    get_run_logger().info("registered %s v%s, promoted=%s (%s)", result["name"], result["version"],
                          result["promoted"], result["reason"])
    version_url = ui_links.model_version_url(cfg, result["name"], result["version"])
    if version_url:
        create_link_artifact(version_url, link_text=f"{result['name']} v{result['version']}",
                             key="registered-version", description="the registered model version in MLflow")
    if result["promoted"]:
        notify_promotion(cfg, result, version_url)
    return result
