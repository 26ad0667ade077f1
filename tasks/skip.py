"""check-unchanged: the run key (data md5 + config + code) and whether the last successful run had it."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment
from prefect.tasks import exponential_backoff

import textclf
from textclf import run_key
from textclf.config import PipelineConfig
from textclf.errors import TextclfError
from textclf.run_key import SkipDecision

# The code a run depends on: the library and this orchestration layer.
CODE_ROOTS = [
    Path(textclf.__file__).resolve().parent,
    Path(__file__).resolve().parent,
    Path(__file__).resolve().parent.parent / "flows",
]


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
@task(
    name="check-unchanged",
    retries=3,
    retry_delay_seconds=exponential_backoff(2),
    retry_jitter_factor=0.5,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def check_unchanged(cfg: PipelineConfig) -> SkipDecision:
    decision = run_key.decide_skip(cfg, CODE_ROOTS, deployment.name)
    get_run_logger().info(decision.reason)
    return decision
