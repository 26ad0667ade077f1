"""The pipeline's stages as plain functions: config + small references in, small references out.

Prefect tasks, DVC stages (through the CLI) and the benchmarks all call these, and they write the same
folders whoever calls. Big things (datasets, models) live in the run folder and are handed on by path.
A stage given a `TrackedRun` records what it did there; without one (DVC, benchmarks) it only writes files.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import DatasetDict, load_from_disk

from textclf.augment.cache import AugmentCache, cache_path
from textclf.augment.label_filter import label_filter_for
from textclf.augment.report import AugmentReport
from textclf.augment.training_split import augment_train_split
from textclf.compare import ModelComparison, score_folder, score_version
from textclf.config import PipelineConfig, TrainConfig, dump_yaml
from textclf.data.sources import content_digest, load_source
from textclf.data.split import split_stratified
from textclf.data.validate import ValidationReport, run_gate
from textclf.errors import ValidationFailed
from textclf.evaluate import EvalReport, evaluate_model
from textclf.lineage import Lineage, record_data_lineage, student_lineage
from textclf.monitor.core import NoChampion, TooFewRows, monitor_drop, read_drop
from textclf.monitor.history import annotate_version, log_result
from textclf.monitor.report import write_report
from textclf.monitor.result import MonitorResult
from textclf.promotion import PromotionOutcome, register_and_promote
from textclf.registry import download_registered
from textclf.settings import cpu_threads
from textclf.tracking import TrackedRun, start_run
from textclf.train.distill import DistillPlan, prepare_distillation, resolve_teacher
from textclf.train.distill_report import DistillReport, compare_teacher_student
from textclf.train.finetune import TrainResult
from textclf.train.launch import launch_training
from textclf.versioning import source_version

# Folders a stage writes inside its `out_dir` (the DVC stages' outs in dvc.yaml are these too).
RAW, SPLITS, VALIDATION, VALIDATED, AUGMENT_REPORT, AUGMENTED, MONITOR = (
    "raw",
    "splits",
    "validation",
    "validated",
    "augment",
    "augmented",
    "monitor",
)


@dataclass
class DataRef:
    """A dataset saved with `save_to_disk`: where it is, its content digest and its sizes."""

    path: str
    fingerprint: str
    rows: dict[str, int]
    labels: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_splits(cls, path: str | Path) -> DataRef:
        """The reference of splits saved earlier (e.g. by another DVC stage)."""
        splits = load_from_disk(str(path))
        return cls(
            str(path), splits_digest(splits), {k: len(v) for k, v in splits.items()}, splits["train"].features["label"].names
        )


def splits_digest(splits: DatasetDict) -> str:
    return hashlib.sha256("".join(content_digest(splits[name]) for name in sorted(splits)).encode()).hexdigest()[:32]


def save_splits(splits: DatasetDict, target: Path) -> Path:
    """Write `splits` to `target` whole or not at all (a `.partial` folder renamed into place)."""
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    splits.save_to_disk(str(partial))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def run_dir(cfg: PipelineConfig, run_key: str) -> Path:
    path = cfg.output_path / "runs" / run_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_tracking(
    cfg: PipelineConfig, run_name: str | None, tags: dict[str, str], parent: TrackedRun | None = None
) -> TrackedRun:
    """The run's MLflow run: the whole config as params and config.yaml (a child run under `parent`)."""
    if parent is not None:
        tags = {**tags, "mlflow.parentRunId": parent.run_id}
    if cfg.ops.reason:
        tags = {**tags, "run.reason": cfg.ops.reason}
    return start_run(cfg.tracking_target(), cfg.flat(), {"config.yaml": dump_yaml(cfg)}, run_name, tags)


def ingest(cfg: PipelineConfig, out_dir: Path) -> DataRef:
    """Read the configured source into `out_dir/raw` (Arrow)."""
    dataset = load_source(cfg.data)
    target = Path(out_dir) / RAW
    dataset.save_to_disk(str(target))
    return DataRef(str(target), content_digest(dataset), {"all": len(dataset)}, dataset.features["label"].names)


def split(cfg: PipelineConfig, raw: DataRef, out_dir: Path) -> DataRef:
    """Stratified, seeded train/validation/test split into `out_dir/splits`."""
    dataset = load_from_disk(raw.path)
    splits = split_stratified(
        dataset, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed, grouped=cfg.data.group_column is not None
    )
    target = Path(out_dir) / SPLITS
    splits.save_to_disk(str(target))
    return DataRef(str(target), raw.fingerprint, {k: len(v) for k, v in splits.items()}, raw.labels)


def record_lineage(cfg: PipelineConfig, run: TrackedRun, data: DataRef) -> Lineage:
    """Tag the run with the data version (DVC md5 or why there is none) and the splits' digests."""
    return record_data_lineage(run, data.path, data.fingerprint, source_version(cfg.data))


@dataclass
class Validated:
    data: DataRef  # the rows to train on, in `out_dir/validated`
    report: ValidationReport


def validate(cfg: PipelineConfig, data: DataRef, out_dir: Path, run: TrackedRun | None = None) -> Validated:
    """Run the data gate into `out_dir/validation`; the rows to train on go to `out_dir/validated`.

    In quarantine mode the failing rows are gone from them; otherwise they are a copy of `data`. The
    report goes to `run` whether the gate passes or not. Raises ValidationFailed (with the report) when
    it does not pass: nothing downstream runs.
    """
    report_dir = Path(out_dir) / VALIDATION
    report, kept = run_gate(load_from_disk(data.path), cfg.validate_, report_dir, labels=cfg.data.labels)
    if run is not None:
        run.log_artifacts(report_dir, VALIDATION)  # Data Docs, validation.json, quarantine.csv
    if cfg.validate_.enabled and not report.passed:
        raise ValidationFailed(report.message(), report)
    target = save_splits(kept, Path(out_dir) / VALIDATED)
    fingerprint = splits_digest(kept) if report.quarantined else data.fingerprint
    return Validated(DataRef(str(target), fingerprint, {k: len(v) for k, v in kept.items()}, data.labels), report)


@dataclass
class Augmented:
    data: DataRef  # `out_dir/augmented`: a larger training split, validation and test as they were
    report: AugmentReport


def augment(cfg: PipelineConfig, data: DataRef, out_dir: Path, run: TrackedRun | None = None, log_line=print) -> Augmented:
    """Augment the training split into `out_dir/augmented` (a copy when `augment.enabled=false`); report in
    `out_dir/augment`. Translations are cached in `augment.cache_dir` across runs (a Dask fan-out fills it)."""
    splits = load_from_disk(data.path)
    if cfg.augment.enabled:
        predict, note = label_filter_for(cfg.augment.label_filter, cfg.registry_target(), Path(out_dir) / "label_filter_model")
        with AugmentCache(cache_path(cfg.augment, cfg.output_path)) as cache:
            augmented, report = augment_train_split(
                splits, cfg.augment, cache, threads=cpu_threads(), predict_proba=predict, log=log_line
            )
        if note:
            report.notes.append(note)
        fingerprint = splits_digest(augmented)
    else:
        augmented, fingerprint = splits, data.fingerprint
        report = AugmentReport.unchanged(splits["train"], "augmentation off (augment.enabled=false)")
    report_dir = Path(out_dir) / AUGMENT_REPORT
    report.write(report_dir)  # augment_report.json + .md
    target = save_splits(augmented, Path(out_dir) / AUGMENTED)
    if run is not None:
        run.log_metrics(report.metrics())
        run.log_artifacts(report_dir, AUGMENT_REPORT)
    return Augmented(DataRef(str(target), fingerprint, {k: len(v) for k, v in augmented.items()}, data.labels), report)


def train(cfg: PipelineConfig, data: DataRef, out_dir: Path, run: TrackedRun | None = None, log_line=print) -> TrainResult:
    """Train under torchrun (the same `textclf train` entry the DVC stage runs); rank 0 logs to `run`.

    train.kind=finetune: the whole model, on every process torchrun starts; train.kind=probe: the frozen-encoder
    probe (textclf.train.probe) in one process, its vectors cached in `cfg.vector_cache_path()`."""
    launch = cfg.train if cfg.train.kind == "finetune" else single_process(cfg.train)
    return launch_training(launch, _entry_args("train", cfg, data, Path(out_dir), run), Path(out_dir), log_line=log_line)


def single_process(train: TrainConfig) -> TrainConfig:
    """`train` launched as one local process (the probe: encoding and a head fit, nothing to distribute)."""
    return train.model_copy(update={"nproc_per_node": 1, "nnodes": 1, "node_rank": 0, "rdzv_endpoint": None})


def _entry_args(command: str, cfg: PipelineConfig, data: DataRef, out_dir: Path, run: TrackedRun | None) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.yaml"
    config_file.write_text(dump_yaml(cfg))
    args = [command, "--config", str(config_file), "--data", data.path, "--out", str(out_dir)]
    return args + (["--mlflow-run-id", run.run_id] if run is not None else [])


def evaluate(
    cfg: PipelineConfig, model_dir: str, data: DataRef, out_dir: Path, run: TrackedRun | None = None, progress=None
) -> EvalReport:
    """Score the trained model on the held-out test split; writes `test_metrics.json` and `evaluation/` (plots)."""
    report = evaluate_model(
        model_dir, data.path, "test", batch_size=cfg.train.eval_batch_size, progress=progress, settings=cfg.evaluate
    )
    report.write(Path(out_dir) / "test_metrics.json")
    folder = report.write_artifacts(Path(out_dir) / "evaluation")
    if run is not None:
        run.log_metrics(report.prefixed())
        run.log_artifacts(folder, "evaluation")
    return report


@dataclass
class AblationOutcome:
    """Augmented vs un-augmented training on the same split: which one goes on, and the numbers."""

    keep_augmented: bool
    train: TrainResult  # the model that goes on
    report: EvalReport
    compared: dict[str, tuple[float, float]]  # test metric -> (with augmentation, without)

    @property
    def chosen(self) -> str:
        return "augmented" if self.keep_augmented else "no-augmentation"

    def markdown(self) -> str:
        rows = "\n".join(f"| {k} | {w:.4f} | {wo:.4f} | {w - wo:+.4f} |" for k, (w, wo) in self.compared.items())
        return (
            "## Augmentation ablation\n\n| metric | with | without | delta |\n|---|---|---|---|\n"
            + rows
            + f"\n\nPromotion candidate: **{'augmented' if self.keep_augmented else 'without augmentation'}** "
            "(higher validation accuracy)."
        )


def ablation(
    cfg: PipelineConfig,
    clean: DataRef,
    out_dir: Path,
    trained: TrainResult,
    report: EvalReport,
    run: TrackedRun | None = None,
    log_line=print,
) -> AblationOutcome:
    """Train and evaluate without augmentation (same seed, same split); the better model by validation
    accuracy goes on. Both results and the deltas go to `run`."""
    base_dir = Path(out_dir) / "ablation-noaug"
    base = train(cfg, clean, base_dir, log_line=log_line)
    base_report = evaluate(cfg, base.model_dir, clean, base_dir)
    with_aug, without = report.prefixed(), base_report.prefixed()
    compared = {k: (with_aug[k], without[k]) for k in with_aug if k in without}
    keep = trained.val_metrics.get("val_accuracy", 0.0) >= base.val_metrics.get("val_accuracy", 0.0)
    outcome = AblationOutcome(keep, trained if keep else base, report if keep else base_report, compared)
    if run is not None:
        run.log_metrics(
            {
                **{f"ablation.noaug.{k}": v for k, v in {**base.val_metrics, **without}.items()},
                **{f"ablation.delta.{k}": w - wo for k, (w, wo) in compared.items()},
            }
        )
        run.set_tags({"augment.ablation.chosen": outcome.chosen})
    return outcome


@dataclass
class DistillOutcome:
    """What `distill` produced: the student's training result, the plan it followed, its own MLflow run."""

    model_dir: str
    result: TrainResult
    plan: DistillPlan
    run: TrackedRun | None = None  # a child run of the pipeline's run, when distill was given a parent


def student_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config the student is registered under: registry name `<model_name>-student`."""
    registry = cfg.registry.model_copy(update={"model_name": f"{cfg.registry.model_name}-student"})
    return cfg.model_copy(update={"registry": registry})


def distill(
    cfg: PipelineConfig,
    data: DataRef,
    out_dir: Path,
    teacher_dir: str | None = None,
    parent: TrackedRun | None = None,
    log_line=print,
) -> DistillOutcome:
    """Distil the teacher into a student under torchrun (the `textclf distill` entry) in `out_dir`.

    The teacher is `distill.teacher`, or `teacher_dir` (the model this run just fine-tuned) when empty.
    Teacher logits come from `<output_dir>/cache/teacher_logits` when an earlier run computed them. With
    `parent`, the student gets its own MLflow run under it (ended FAILED if distillation fails).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = cfg.tracking_target()
    teacher = resolve_teacher(
        cfg.distill.teacher, teacher_dir, out_dir / "teacher", lambda uri, dest: download_registered(target, uri, dest)
    )
    plan = prepare_distillation(
        cfg.train, cfg.distill, data.path, out_dir, teacher, cfg.output_path / "cache" / "teacher_logits", cfg.vector_cache_path()
    )
    log_line(
        f"[distill] teacher {plan.teacher_ref}; logits {'from cache' if plan.logits_cache_hit else 'computed'} "
        f"in {plan.logits_seconds:.1f}s; student ({plan.student_kind}) {plan.student}"
    )
    run = None
    if parent is not None:
        run = start_tracking(student_config(cfg), "distill", {"textclf.stage": "distill"}, parent)
    try:
        # A retry reuses the same folder: cached teacher logits, training resumes from its last checkpoint.
        result = launch_training(cfg.train, _entry_args("distill", cfg, data, out_dir, run), out_dir, log_line=log_line)
    except BaseException:
        if run is not None:
            run.end("FAILED")
        raise
    return DistillOutcome(result.model_dir, result, plan, run)


@dataclass
class StudentEvaluation:
    evaluation: EvalReport  # the student's test evaluation, for its gate
    comparison: DistillReport  # teacher vs student side by side


def evaluate_student(
    cfg: PipelineConfig, student: DistillOutcome, data: DataRef, parent: TrackedRun | None = None
) -> StudentEvaluation:
    """The student's test evaluation and teacher vs student on the test split (quality, size, CPU
    latency/throughput, agreement); with `distill.onnx_export`, `model.onnx` is written beside the
    student's weights, checked and timed too. Metrics go to the student's run and the parent's."""
    out = Path(student.model_dir).parent
    evaluation = evaluate(cfg, student.model_dir, data, out)
    comparison = compare_teacher_student(
        Path(student.plan.teacher_dir),
        Path(student.model_dir),
        Path(data.path),
        "test",
        cfg.distill.report_latency_texts,
        onnx=cfg.distill.onnx_export,
    )
    report_file = comparison.write(out / "distill_report.json")
    metrics = comparison.metrics()
    if student.run is not None:
        student.run.log_metrics({**evaluation.prefixed(), **metrics})
        student.run.log_artifacts(report_file)
    if parent is not None:
        parent.log_metrics({f"distill_{k}": v for k, v in metrics.items()})
    return StudentEvaluation(evaluation, comparison)


def promote(
    cfg: PipelineConfig,
    run: TrackedRun,
    model_dir: str,
    report: EvalReport,
    data: DataRef,
    out_dir: Path,
    lineage: Lineage,
    trigger: str,
    actor: str = "pipeline",
) -> PromotionOutcome:
    """Register the model with its lineage, evidence and model card, then the audited champion/challenger
    gate: the champion is re-evaluated on the same test split."""
    return register_and_promote(
        cfg.registry_target(),
        cfg.evaluate,
        run.run_id,
        model_dir,
        report,
        lineage.version_tags(),
        data.path,
        trigger,
        actor,
        eval_dir=Path(out_dir) / "evaluation",
        batch_size=cfg.train.eval_batch_size,
    )


def promote_student(
    cfg: PipelineConfig,
    student: DistillOutcome,
    evaluation: StudentEvaluation,
    data: DataRef,
    lineage: Lineage,
    teacher: PromotionOutcome | None,
    trigger: str,
    actor: str = "pipeline",
) -> PromotionOutcome:
    """The student through the same gate under its own registry name, tagged with its teacher's version."""
    assert student.run is not None, "a student is promoted from its own MLflow run (distill with a parent)"
    tags = student_lineage(lineage, student.plan, teacher, cfg.distill)
    return promote(
        student_config(cfg),
        student.run,
        student.model_dir,
        evaluation.evaluation,
        data,
        Path(student.model_dir).parent,
        tags,
        trigger,
        actor,
    )


def compare_models(
    cfg: PipelineConfig,
    data: DataRef,
    out_dir: Path,
    trained: TrainResult,
    report: EvalReport,
    decision: PromotionOutcome,
    student: DistillOutcome | None = None,
    evaluated: StudentEvaluation | None = None,
    student_decision: PromotionOutcome | None = None,
    run: TrackedRun | None = None,
) -> ModelComparison:
    """This run's teacher and student and the champions each was gated against (scored now), on the validation
    split: `out_dir/comparison` (json + md), and to `run` as an artifact and compare.* metrics."""
    speed = evaluated.comparison if evaluated is not None else None
    comparison = ModelComparison("validation")
    comparison.rows.append(
        score_folder(
            "teacher",
            trained.model_dir,
            trained.val_metrics,
            report.metrics.get("accuracy"),
            speed.teacher.throughput_b32 if speed else report.metrics.get("throughput_texts_per_s"),
        )
    )
    if student is not None and evaluated is not None and speed is not None:
        comparison.rows.append(
            score_folder(
                "student",
                student.model_dir,
                student.result.val_metrics,
                evaluated.evaluation.metrics.get("accuracy"),
                speed.student.throughput_b32,
            )
        )
    target = cfg.registry_target()
    for outcome in (decision, student_decision):
        if outcome is not None and outcome.previous_champion:
            comparison.rows.append(
                score_version(target, outcome.name, outcome.previous_champion, data.path, "validation", cfg.train.eval_batch_size)
            )
    folder = comparison.write(Path(out_dir) / "comparison")
    if run is not None:
        run.log_metrics(comparison.metrics())
        run.log_artifacts(folder, "comparison")
    return comparison


@dataclass
class Monitored:
    """A monitoring pass: its result (decision included), the report folder and its MLflow run; or, for a drop
    with fewer new rows than the tests judge (monitor.min_rows), no result and why (`nothing`)."""

    result: MonitorResult | None
    folder: Path  # report.html + monitor.json
    run: TrackedRun | None  # in <experiment>-monitor
    nothing: str = ""

    def retrain_reason(self) -> str:
        """The reason of a retrain this result starts (ops.reason, at most 500 characters): findings, version, run."""
        if self.result is None or self.run is None:
            return ""
        findings = ", ".join(self.result.decision.findings)
        return f"monitor: {findings} on {self.result.model} (MLflow run {self.run.run_id})"[:500]


def monitor(
    cfg: PipelineConfig, drop: str | None, out_dir: Path, tags: dict[str, str] | None = None, log_line=print
) -> Monitored:
    """Judge `drop` (a file or folder; None: the configured data's rows new since the champion) with the champion
    of monitor.model: `out_dir/monitor` (report.html, monitor.json), a run in `<experiment>-monitor`, the version's
    monitor.* tags and model card."""
    folder = Path(out_dir) / MONITOR
    try:
        result = monitor_drop(cfg, read_drop(Path(drop), cfg.data) if drop else None, progress=log_line)
    except TooFewRows as few:  # nothing new enough to judge: not an error of the service's, not a result
        log_line(f"skipped: {few}")
        return Monitored(None, folder, None, f"skipped: {few}")
    write_report(result, folder)
    run = log_result(cfg, result, folder, tags)
    annotate_version(cfg, result, run)
    log_line(result.decision.reason)
    return Monitored(result, folder, run)


@dataclass
class PolicyCheck:
    """The retrain policy on the rows new since the champion: retrain or not, why, and the monitoring run."""

    retrain: bool
    reason: str
    monitor_run_id: str | None = None


def policy_check(cfg: PipelineConfig, out_dir: Path, tags: dict[str, str] | None = None, log_line=print) -> PolicyCheck:
    """What the scheduled deployment asks before retraining on changed data (monitor.scheduled)."""
    try:
        monitored = monitor(cfg, None, out_dir, tags, log_line)
    except NoChampion as missing:  # no champion yet: nothing to keep
        return PolicyCheck(True, f"retrain: no champion to judge the new rows with ({missing})")
    if monitored.result is None or monitored.run is None:
        return PolicyCheck(False, monitored.nothing)
    return PolicyCheck(monitored.result.decision.retrain, monitored.result.decision.reason, monitored.run.run_id)
