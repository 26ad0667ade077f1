"""train: fine-tune under torchrun, every rank's output streamed into this task's log."""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from textclf import stages
from textclf.config import PipelineConfig
from textclf.train.finetune import TrainResult


@task(name="train", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def train(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run_id: str) -> TrainResult:
    # A retry reuses the same run folder, so training resumes from its last checkpoint.
    return stages.train(cfg, data, out_dir, mlflow_run_id=run_id, log_line=get_run_logger().info)
