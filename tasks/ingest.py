"""ingest: add new drops, read the configured source, split it (stratified, seeded), record its lineage."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT, NO_CACHE

from textclf import stages, versioning
from textclf.config import PipelineConfig
from textclf.errors import ConfigError
from textclf.lineage import Lineage
from textclf.tracking import TrackedRun


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
def add_drops(cfg: PipelineConfig) -> versioning.DataVersion:
    if cfg.data.inbox is None:  # the flow runs this task only when an inbox is set
        raise ConfigError("add-drops needs data.inbox: the folder new drops arrive in")
    version = versioning.add_inbox(Path(cfg.data.inbox), cfg.data)
    get_run_logger().info("; ".join([version.message(), *version.notes]))
    return version


@task(name="lineage", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_lineage(cfg: PipelineConfig, run: TrackedRun, data: stages.DataRef) -> Lineage:
    """Tag the MLflow run with the data version and digests; returns the run's lineage."""
    lineage = stages.record_lineage(cfg, run, data)
    get_run_logger().info("data version %s (%s)", lineage.data_version, lineage.tags.get("data.source"))
    return lineage
