"""ingest: read the configured source, then split it (stratified, seeded)."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from textclf import stages
from textclf.config import PipelineConfig


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(cfg: PipelineConfig, out_dir: Path) -> stages.DataRef:
    ref = stages.ingest(cfg, out_dir)
    get_run_logger().info("ingested %d rows from %s, labels %s", ref.rows["all"], cfg.data.source, ref.labels)
    return ref


@task(name="split", cache_policy=NO_CACHE)
def split(cfg: PipelineConfig, raw: stages.DataRef, out_dir: Path) -> stages.DataRef:
    ref = stages.split(cfg, raw, out_dir)
    get_run_logger().info("split sizes %s", ref.rows)
    return ref
