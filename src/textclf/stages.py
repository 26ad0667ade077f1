"""The pipeline's stages as plain functions: config + small references in, small references out.

Prefect tasks, DVC stages (through the CLI) and the benchmarks all call these. Big things
(datasets, models) live in the run folder and are handed on by path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import load_from_disk

from textclf.config import PipelineConfig, dump_yaml
from textclf.data.sources import load_source
from textclf.data.split import split_stratified
from textclf.data.validate import ValidationReport, validate_splits
from textclf.errors import ValidationFailed
from textclf.evaluate import EvalReport, evaluate_model
from textclf.train.finetune import TrainResult
from textclf.train.launch import launch_training


@dataclass
class DataRef:
    """A dataset saved with `save_to_disk`: where it is, its content digest and its sizes."""

    path: str
    fingerprint: str
    rows: dict[str, int]
    labels: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def run_dir(cfg: PipelineConfig, run_key: str) -> Path:
    path = cfg.output_path / "runs" / run_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def ingest(cfg: PipelineConfig, out_dir: Path) -> DataRef:
    """Read the configured source into `out_dir/raw` (Arrow)."""
    dataset = load_source(cfg.data)
    target = Path(out_dir) / "raw"
    dataset.save_to_disk(str(target))
    return DataRef(str(target), dataset._fingerprint, {"all": len(dataset)}, dataset.features["label"].names)


def split(cfg: PipelineConfig, raw: DataRef, out_dir: Path) -> DataRef:
    """Stratified, seeded train/validation/test split into `out_dir/splits`."""
    dataset = load_from_disk(raw.path)
    splits = split_stratified(dataset, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed,
                              grouped=cfg.data.group_column is not None)
    target = Path(out_dir) / "splits"
    splits.save_to_disk(str(target))
    return DataRef(str(target), raw.fingerprint, {k: len(v) for k, v in splits.items()}, raw.labels)


def validate(cfg: PipelineConfig, data: DataRef, out_dir: Path) -> ValidationReport:
    """Run the data gate; raises ValidationFailed (nothing downstream runs) when it does not pass."""
    report = validate_splits(load_from_disk(data.path), cfg.validate_, Path(out_dir) / "validation")
    if cfg.validate_.enabled and not report.passed:
        raise ValidationFailed(report.message())
    return report


def train(cfg: PipelineConfig, data: DataRef, out_dir: Path, mlflow_run_id: str | None = None,
          log_line=print) -> TrainResult:
    """Fine-tune under torchrun (the same `textclf train` entry the DVC stage runs)."""
    out_dir = Path(out_dir)
    config_file = out_dir / "config.yaml"
    config_file.write_text(dump_yaml(cfg))
    args = ["train", "--config", str(config_file), "--data", data.path, "--out", str(out_dir)]
    if mlflow_run_id:
        args += ["--mlflow-run-id", mlflow_run_id]
    return launch_training(cfg.train, args, out_dir, log_line=log_line)


def evaluate(cfg: PipelineConfig, model_dir: str, data: DataRef, out_dir: Path, progress=None) -> EvalReport:
    """Score the trained model on the held-out test split; writes `test_metrics.json`."""
    report = evaluate_model(model_dir, data.path, "test", batch_size=cfg.train.eval_batch_size,
                            max_length=cfg.train.max_length, progress=progress)
    report.write(Path(out_dir) / "test_metrics.json")
    return report
