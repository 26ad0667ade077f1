"""train: fine-tune under torchrun, every rank's output streamed into this task's log."""

import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import DEFAULT

from textclf import stages
from textclf.config import PipelineConfig
from textclf.tracking import TrackedRun
from textclf.train.finetune import TrainResult

MAX_CURVE_ROWS = 200


# Persisted per flow run: a retried flow run skips a finished training; an unfinished one resumes.
@task(name="train", retries=1, retry_delay_seconds=5, cache_policy=DEFAULT, persist_result=True)
def train(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run: TrackedRun) -> TrainResult:
    # A retry reuses the same run folder, so training resumes from its last checkpoint.
    result = stages.train(cfg, data, out_dir, run, log_line=get_run_logger().info)
    curve_artifact(Path(out_dir) / "metrics.jsonl", run.run_id)
    return result


def curve_artifact(metrics_file: Path, run_id: str) -> None:
    """The training curve (loss and validation metrics by step) as a table in the Prefect UI."""
    if not metrics_file.is_file():
        return
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    stride = max(1, len(rows) // MAX_CURVE_ROWS)
    table = [{k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()} for row in rows[::stride]]
    if table:
        create_table_artifact(
            table, key="training-curve", description=f"training curve of MLflow run {run_id} (every {stride}. logged step)"
        )
