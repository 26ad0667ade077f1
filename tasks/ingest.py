"""ingest: read the configured source, then split it (stratified, seeded)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT, NO_CACHE

from textclf import stages, tracking, versioning
from textclf.config import PipelineConfig


@task(name="ingest", cache_policy=DEFAULT, persist_result=True)
def ingest(cfg: PipelineConfig, out_dir: Path) -> stages.DataRef:
    ref = stages.ingest(cfg, out_dir)
    get_run_logger().info("ingested %d rows from %s, labels %s", ref.rows["all"], cfg.data.source, ref.labels)
    return ref


@task(name="split", cache_policy=DEFAULT, persist_result=True)
def split(cfg: PipelineConfig, raw: stages.DataRef, out_dir: Path) -> stages.DataRef:
    ref = stages.split(cfg, raw, out_dir)
    get_run_logger().info("split sizes %s", ref.rows)
    return ref


# Adds the inbox's new drops to the DVC-tracked folder before anything reads it (identical drops: no version).
@task(name="add-drops", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def add_drops(cfg: PipelineConfig) -> dict:
    version = versioning.add_data(Path(cfg.data.inbox), cfg.data)
    get_run_logger().info(version.message())
    return version.to_dict()


@task(name="lineage", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_lineage(cfg: PipelineConfig, run_id: str, data: stages.DataRef) -> dict[str, str]:
    """Tag the MLflow run with the data version and digests; returns every lineage tag of the run."""
    tracking.record_data_lineage(cfg, run_id, data.path, data.fingerprint, versioning.source_version(cfg.data))
    return tracking.lineage_tags(cfg, run_id)
