"""check-unchanged: the run key (data md5 + config + code) and whether the last successful run had it."""

from dataclasses import dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment
from prefect.tasks import exponential_backoff

from textclf import run_key
from textclf.config import PipelineConfig
from textclf.errors import TextclfError

SCHEDULED_DEPLOYMENT = "scheduled"
CODE_ROOTS = [Path(run_key.__file__).resolve().parent, Path(__file__).resolve().parent,
              Path(__file__).resolve().parent.parent / "flows"]


@dataclass
class SkipDecision:
    skip: bool
    reason: str
    key_tags: dict[str, str] = field(default_factory=dict)
    previous_run_id: str | None = None


def transient(task, task_run, state) -> bool:
    """Retry connection trouble and server errors, not a user error (missing data, bad config)."""
    try:
        state.result()
    except TextclfError:
        return False
    except Exception:
        return True
    return False


# MLflow is asked for the previous run: retried with backoff while the tracking server is unreachable.
@task(name="check-unchanged", retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
      retry_condition_fn=transient, cache_policy=NO_CACHE)
def check_unchanged(cfg: PipelineConfig) -> SkipDecision:
    key = run_key.compute_run_key(cfg, CODE_ROOTS)
    logger = get_run_logger()
    mode = cfg.ops.skip_unchanged
    if mode == "never" or (mode == "scheduled" and deployment.name != SCHEDULED_DEPLOYMENT):
        return SkipDecision(False, f"ops.skip_unchanged={mode!r}: not a run to skip", key.as_tags())
    previous = run_key.last_successful_run(cfg, key)
    if previous is None:
        logger.info("run key %s (data %s, config %s, code %s) is new: training", key.value, key.data,
                    key.config, key.code)
        return SkipDecision(False, f"run key {key.value} is new", key.as_tags())
    reason = (f"skipped: data md5 {key.data}, config {key.config} and code {key.code} are unchanged since "
              f"successful MLflow run {previous}")
    logger.info(reason)
    return SkipDecision(True, reason, key.as_tags(), previous)
