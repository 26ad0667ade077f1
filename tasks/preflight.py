"""preflight: fail in a second on a missing data source, column or model, before any work."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from textclf.config import PipelineConfig
from textclf.preflight import preflight as check


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(cfg: PipelineConfig) -> None:
    check(cfg)
