"""register: log the model to MLflow, create a registry version, apply the champion decision."""

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from textclf import registry
from textclf.config import PipelineConfig


@task(name="register", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def register(cfg: PipelineConfig, run_id: str, model_dir: str, metrics: dict[str, float],
             tags: dict[str, str]) -> dict:
    result = registry.register_and_promote(cfg, run_id, model_dir, metrics, tags)
    create_markdown_artifact(
        f"## Registry\n\nversion **{result['version']}** of `{result['name']}`: "
        f"{'promoted to @' + cfg.registry.champion_alias if result['promoted'] else 'not promoted'} "
        f"({result['reason']})", key="promotion-decision")
    get_run_logger().info("registered %s v%s, promoted=%s (%s)", result["name"], result["version"],
                          result["promoted"], result["reason"])
    return result
