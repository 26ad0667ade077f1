"""The pipeline's stages as plain functions: config + small references in, small references out.

Prefect tasks, DVC stages (through the CLI) and the benchmarks all call these. Big things
(datasets, models) live in the run folder and are handed on by path.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import load_from_disk

from textclf.augment.cache import AugmentCache, cache_path
from textclf.augment.report import AugmentReport
from textclf.augment.training_split import augment_train_split
from textclf.config import PipelineConfig, dump_yaml
from textclf.data.sources import content_digest, load_source
from textclf.data.split import split_stratified
from textclf.data.validate import ValidationReport, run_gate
from textclf.errors import ValidationFailed
from textclf.evaluate import EvalReport, evaluate_model
from textclf.train.distill import lineage_tags as student_lineage  # noqa: F401 (flows use it)
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
    return DataRef(str(target), content_digest(dataset), {"all": len(dataset)}, dataset.features["label"].names)


def split(cfg: PipelineConfig, raw: DataRef, out_dir: Path) -> DataRef:
    """Stratified, seeded train/validation/test split into `out_dir/splits`."""
    dataset = load_from_disk(raw.path)
    splits = split_stratified(dataset, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed,
                              grouped=cfg.data.group_column is not None)
    target = Path(out_dir) / "splits"
    splits.save_to_disk(str(target))
    return DataRef(str(target), raw.fingerprint, {k: len(v) for k, v in splits.items()}, raw.labels)


def validate(cfg: PipelineConfig, data: DataRef, out_dir: Path) -> tuple[DataRef, ValidationReport]:
    """Run the data gate into `out_dir/validation`; returns the data to train on and the report.

    Raises ValidationFailed (nothing downstream runs) when it does not pass. In quarantine mode the
    rows that were dropped are gone from the returned data, saved to `out_dir/validated`.
    """
    report, kept = run_gate(load_from_disk(data.path), cfg.validate_, Path(out_dir) / "validation",
                            labels=cfg.data.labels)
    if cfg.validate_.enabled and not report.passed:
        raise ValidationFailed(report.message())
    if not report.quarantined:
        return data, report
    target = Path(out_dir) / "validated"
    kept.save_to_disk(str(target))
    digest = hashlib.sha256("".join(content_digest(kept[name]) for name in sorted(kept)).encode())
    return DataRef(str(target), digest.hexdigest()[:32], {k: len(v) for k, v in kept.items()}, data.labels), report


def augment(cfg: PipelineConfig, data: DataRef, out_dir: Path, log_line=print) -> tuple[DataRef, AugmentReport]:
    """Augment the training split into `out_dir/augmented` (validation and test as they are); report in
    `out_dir/augment`. Translations are cached in `augment.cache_dir` across runs."""
    from textclf.augment.label_filter import label_filter_for
    from textclf.settings import cpu_threads

    splits = load_from_disk(data.path)
    predict_proba, note = label_filter_for(cfg, Path(out_dir) / "label_filter_model")
    with AugmentCache(cache_path(cfg)) as cache:  # a Dask fan-out (flows/augment_fan_out.py) filled it
        augmented, report = augment_train_split(splits, cfg.augment, cache, threads=cpu_threads(),
                                                predict_proba=predict_proba, log=log_line)
    if note:
        report.notes.append(note)
    report.write(Path(out_dir) / "augment")
    target = Path(out_dir) / "augmented"
    augmented.save_to_disk(str(target))
    digest = hashlib.sha256("".join(content_digest(augmented[name]) for name in sorted(augmented)).encode())
    ref = DataRef(str(target), digest.hexdigest()[:32], {k: len(v) for k, v in augmented.items()}, data.labels)
    return ref, report


def train(cfg: PipelineConfig, data: DataRef, out_dir: Path, mlflow_run_id: str | None = None,
          log_line=print) -> TrainResult:
    """Fine-tune under torchrun (the same `textclf train` entry the DVC stage runs)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.yaml"
    config_file.write_text(dump_yaml(cfg))
    args = ["train", "--config", str(config_file), "--data", data.path, "--out", str(out_dir)]
    if mlflow_run_id:
        args += ["--mlflow-run-id", mlflow_run_id]
    return launch_training(cfg.train, args, out_dir, log_line=log_line)


def evaluate(cfg: PipelineConfig, model_dir: str, data: DataRef, out_dir: Path, progress=None) -> EvalReport:
    """Score the trained model on the held-out test split; writes `test_metrics.json` and `evaluation/` (plots)."""
    report = evaluate_model(model_dir, data.path, "test", batch_size=cfg.train.eval_batch_size,
                            max_length=cfg.train.max_length, progress=progress, settings=cfg.evaluate)
    report.write(Path(out_dir) / "test_metrics.json")
    report.write_artifacts(Path(out_dir) / "evaluation")
    return report


@dataclass
class DistillOutcome:
    """What `distill` produced: the student's training result and the plan it followed."""

    model_dir: str
    train: dict
    plan: dict
    mlflow_run_id: str | None = None  # the student's own MLflow run, when the flow opened one

    def to_dict(self) -> dict:
        return asdict(self)


def distill(cfg: PipelineConfig, data: DataRef, out_dir: Path, teacher_dir: str | None = None,
            mlflow_run_id: str | None = None, log_line=print) -> DistillOutcome:
    """Distil the teacher into a student under torchrun (the `textclf distill` entry); run folder `out_dir`.

    The teacher is `distill.teacher`, or `teacher_dir` (the model this run just fine-tuned) when empty.
    Teacher logits come from `<output_dir>/cache/teacher_logits` when an earlier run computed them.
    """
    from textclf.train.distill import prepare_distillation

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = prepare_distillation(cfg, data.path, out_dir, teacher_dir, cfg.output_path / "cache" / "teacher_logits")
    log_line(f"[distill] teacher {plan.teacher_ref}; logits {'from cache' if plan.logits_cache_hit else 'computed'} "
             f"in {plan.logits_seconds:.1f}s; student ({plan.student_kind}) {plan.student}")
    config_file = out_dir / "config.yaml"
    config_file.write_text(dump_yaml(cfg))
    args = ["distill", "--config", str(config_file), "--data", data.path, "--out", str(out_dir)]
    if mlflow_run_id:
        args += ["--mlflow-run-id", mlflow_run_id]
    result = launch_training(cfg.train, args, out_dir, log_line=log_line)
    return DistillOutcome(result.model_dir, asdict(result), asdict(plan))


def student_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config the student is registered under: registry name `<model_name>-student`."""
    registry = cfg.registry.model_copy(update={"model_name": f"{cfg.registry.model_name}-student"})
    return cfg.model_copy(update={"registry": registry})


def distill_report(cfg: PipelineConfig, teacher_dir: str, student_dir: str, data: DataRef, out_dir: Path):
    """Teacher vs student on the test split (quality, size, CPU latency/throughput, agreement); with
    `distill.onnx_export`, the student's `model.onnx` is written beside its weights, checked and timed too."""
    from textclf.train.distill_report import compare_teacher_student

    report = compare_teacher_student(Path(teacher_dir), Path(student_dir), Path(data.path), "test",
                                     cfg.train.max_length, cfg.distill.report_latency_texts,
                                     onnx=cfg.distill.onnx_export)
    report.write(Path(out_dir) / "distill_report.json")
    return report
