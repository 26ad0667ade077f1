"""Knowledge distillation: plan in the launching process, train in every torchrun rank.

`prepare_distillation` (launcher side) resolves the teacher, fills the teacher-logits cache and
builds the student's starting weights, then writes `distill_plan.json`. `run_distillation` (each
rank) trains the student with the HF Trainer on cached teacher logits, with the same arguments,
checkpoints, resume and sinks as fine-tuning. Only rank 0 writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk
from torch import nn
from transformers import DataCollatorWithPadding, PrinterCallback, TrainerCallback, set_seed

from textclf.config import PipelineConfig
from textclf.errors import ConfigError
from textclf.modeling import load_classifier, load_trained
from textclf.tracking import MetricSink, NullSink
from textclf.train.failures import recording_failures
from textclf.train.finetune import (
    TIMING_KEYS,
    SinkCallback,
    TextclfTrainer,
    TrainResult,
    _metrics_fn,
    cpu_threads_per_rank,
    dist_env,
    init_distributed,
    last_complete_checkpoint,
    tokenize_cached,
    training_arguments,
)
from textclf.train.losses import DistillWeights, distillation_loss, pooled_hidden_mse
from textclf.train.process import die_with_parent
from textclf.train.student import build_layer_student
from textclf.train.teacher_cache import TeacherLogitsCache

PLAN_FILE = "distill_plan.json"
PROJECTIONS_ATTR = "distill_projections"


@dataclass
class DistillPlan:
    teacher_dir: str  # local HF folder of the teacher
    teacher_ref: str  # what the user named: a folder, a models:/ URI, or the run's own model
    teacher_version: str | None  # registry version ("name/3") when the teacher came from the registry
    teacher_logits: str  # .npy [n_train, C], row order = the train split's
    logits_key: str
    logits_cache_hit: bool
    logits_seconds: float
    student: str  # folder (layer student) or model reference (pretrained student)
    student_kind: str  # "layers" | "pretrained"
    layer_map: list[int]  # teacher layer matched by each student layer (hidden-state loss)

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / PLAN_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, run_dir: Path) -> DistillPlan:
        return cls(**json.loads((Path(run_dir) / PLAN_FILE).read_text()))


def resolve_teacher(cfg: PipelineConfig, trained_dir: str | None, dest: Path) -> tuple[Path, str, str | None]:
    """(local folder, reference, registry version) of the teacher named by `distill.teacher`."""
    ref = cfg.distill.teacher
    if not ref:
        if not trained_dir:
            raise ConfigError("distill.teacher is empty and this run trained no model; set distill.teacher "
                              "to a model folder or a registry URI such as models:/textclf@champion")
        return Path(trained_dir), "this run's fine-tuned model", None
    if ref.startswith("models:/"):
        from textclf.registry import download_model, resolve_version

        version = resolve_version(cfg, ref)
        local = download_model(cfg, ref, dest)
        found = sorted(p.parent for p in local.rglob("config.json") if any(p.parent.glob("*.safetensors")))
        if not found:
            raise ConfigError(f"distill.teacher {ref}: the registered model holds no Hugging Face model folder")
        return found[0], ref, f"{version.name}/{version.version}"
    path = Path(ref).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"distill.teacher {ref}: not a trained model folder (no config.json); give a folder "
                          "written by `textclf train` (…/model) or a models:/ URI")
    return path, ref, None


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Student layer i matches teacher layer ceil((i+1) * Lt / Ls) - 1 (the last ones always pair up)."""
    return [-(-(i + 1) * n_teacher // n_student) - 1 for i in range(n_student)]


def prepare_distillation(cfg: PipelineConfig, data_dir: str, run_dir: Path, trained_dir: str | None,
                         cache_root: Path) -> DistillPlan:
    """Teacher resolved, its logits cached for the train split, the student's start written: the plan."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher_dir, teacher_ref, teacher_version = resolve_teacher(cfg, trained_dir, run_dir / "teacher")
    train_split = load_from_disk(str(data_dir))["train"]
    labels = train_split.features["label"].names
    cached = TeacherLogitsCache(cache_root).get_or_compute(
        teacher_dir, list(train_split["text"]), cfg.train.max_length, cfg.distill.teacher_batch_size,
        teacher_version)
    if cached.meta["labels"] != labels:
        raise ConfigError(f"distill.teacher predicts labels {cached.meta['labels']} but the data has {labels}; "
                          "use a teacher trained on the same label set")
    n_teacher = json.loads((teacher_dir / "config.json").read_text())["num_hidden_layers"]
    if cfg.distill.student_model:
        student, kind = cfg.distill.student_model, "pretrained"
        model, _ = load_classifier(student, labels, cfg.train.pooling)
        layer_map = uniform_layer_map(model.config.num_hidden_layers, n_teacher)
        del model
    else:
        student_dir, keep = build_layer_student(str(teacher_dir), cfg.distill.student_layers, labels,
                                                run_dir / "student_init")
        student, kind, layer_map = str(student_dir), "layers", keep
    plan = DistillPlan(str(teacher_dir), teacher_ref, teacher_version, cached.path, cached.key, cached.hit,
                       cached.seconds, student, kind, layer_map)
    plan.write(run_dir)
    return plan


class DistillCollator:
    """Pads token inputs with the student's tokenizer; stacks the cached teacher logits [B, C]."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        teacher = [f.pop("teacher_logits") for f in features if "teacher_logits" in f]
        for f in features:
            f.pop("length", None)
        batch = self.pad(features)
        if teacher:
            batch["teacher_logits"] = torch.tensor(teacher, dtype=torch.float32)
        return batch


class DistillTrainer(TextclfTrainer):
    """compute_loss = soft-target KL on the batch's cached teacher logits + hard CE (+ hidden MSE).

    Built on the fine-tuning trainer: same resume-safe length-grouped sampler and token counts.
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by the accumulation steps

    def __init__(self, *args, weights: DistillWeights, teacher: nn.Module | None = None,
                 layer_map: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights = weights
        self.teacher = teacher  # live teacher, only for the hidden-state term
        self.layer_map = layer_map or []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_logits = inputs.pop("teacher_logits", None)
        labels = inputs.pop("labels")
        want_hidden = self.teacher is not None and teacher_logits is not None and model.training
        outputs = model(**inputs, output_hidden_states=want_hidden)
        hidden_term = self._hidden_term(model, inputs, outputs) if want_hidden else None
        parts = distillation_loss(outputs.logits, teacher_logits, labels, self.weights, hidden_term)
        return (parts["loss"], outputs) if return_outputs else parts["loss"]

    def _hidden_term(self, model, inputs, outputs) -> torch.Tensor:
        teacher = self.teacher.to(outputs.logits.device)
        with torch.no_grad():
            t_out = teacher(**inputs, output_hidden_states=True)
        # hidden_states[0] is the embedding output; layer k's output is hidden_states[k + 1].
        s_hidden = list(outputs.hidden_states[1:])
        t_hidden = [t_out.hidden_states[k + 1] for k in self.layer_map]
        unwrapped = self.accelerator.unwrap_model(model)
        projections = getattr(unwrapped, PROJECTIONS_ATTR, None)
        mask = inputs["attention_mask"]
        return pooled_hidden_mse(s_hidden, t_hidden, mask, mask, projections)


def _attach_projections(student: nn.Module, teacher: nn.Module, n_pairs: int) -> None:
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    if ds != dt:
        # Learned Ds -> Dt maps; trained and checkpointed with the student, dropped before the final save.
        setattr(student, PROJECTIONS_ATTR, nn.ModuleList(nn.Linear(ds, dt) for _ in range(n_pairs)))


def _live_teacher(plan: DistillPlan, student, student_tokenizer):
    teacher, teacher_tokenizer = load_trained(plan.teacher_dir)
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ConfigError("distill.hidden_mse > 0 needs a student with the teacher's tokenizer; set "
                          "distill.hidden_mse=0 for a student with its own tokenizer")
    teacher.eval().requires_grad_(False)
    _attach_projections(student, teacher, len(plan.layer_map))
    return teacher


def run_distillation(cfg: PipelineConfig, data_dir: Path, run_dir: Path, cache_dir: Path,
                     sink: MetricSink | None = None) -> TrainResult | None:
    """Train the student of `run_dir/distill_plan.json`; rank 0 returns the result, other ranks None."""
    run_dir = Path(run_dir)
    if "LOCAL_RANK" in os.environ:
        die_with_parent()  # torchrun killed -> this rank goes too, no orphan
    with recording_failures(run_dir):
        return _run(cfg, Path(data_dir), run_dir, Path(cache_dir), sink)


def _run(cfg: PipelineConfig, data_dir: Path, run_dir: Path, cache_dir: Path, sink) -> TrainResult | None:
    rank, _, world_size = dist_env()
    is_main = rank == 0
    sink = sink if (sink is not None and is_main) else NullSink()
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads_per_rank())
    plan = DistillPlan.read(run_dir)
    dcfg = cfg.distill
    splits = load_from_disk(str(data_dir))
    labels = splits["train"].features["label"].names
    init_distributed(cfg.train.ddp_timeout_s)
    set_seed(cfg.train.seed)  # a pretrained student's fresh head is drawn here
    student, tokenizer = load_classifier(plan.student, labels, cfg.train.pooling)
    teacher = _live_teacher(plan, student, tokenizer) if dcfg.hidden_mse > 0 else None
    train_cfg = cfg.train.model_copy(update={"epochs": dcfg.epochs, "learning_rate": dcfg.learning_rate,
                                             "batch_size": dcfg.batch_size})
    args = training_arguments(train_cfg, run_dir)
    args.remove_unused_columns = False  # keep teacher_logits; DistillCollator drops what the model can't take
    with args.main_process_first(desc="tokenize"):
        encoded, _ = tokenize_cached(DatasetDict(train=splits["train"], validation=splits["validation"]),
                                     tokenizer, cfg.train.max_length, cache_dir)
    logits = np.load(plan.teacher_logits)
    if logits.shape[0] != len(encoded["train"]):
        raise ConfigError(f"cached teacher logits have {logits.shape[0]} rows but the train split has "
                          f"{len(encoded['train'])}; delete {plan.teacher_logits} and re-run")
    train_ds = encoded["train"].add_column("teacher_logits", logits.tolist())
    say = print if is_main else (lambda *a, **k: None)
    callbacks: list[TrainerCallback] = [SinkCallback(sink, say)]
    trainer = DistillTrainer(
        model=student, args=args, train_dataset=train_ds, eval_dataset=encoded["validation"],
        processing_class=tokenizer, data_collator=DistillCollator(tokenizer), compute_metrics=_metrics_fn,
        callbacks=callbacks, train_lengths=encoded["train"]["length"] if train_cfg.group_by_length else None,
        weights=DistillWeights(dcfg.temperature, dcfg.alpha, dcfg.hidden_mse), teacher=teacher,
        layer_map=plan.layer_map,
    )
    trainer.remove_callback(PrinterCallback)
    last = last_complete_checkpoint(Path(args.output_dir))
    resumed_from = int(last.name.rsplit("-", 1)[-1]) if last else 0
    if is_main and last:
        print(f"[distill] resuming from {last} (step {resumed_from})", flush=True)
    output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    val = trainer.evaluate()
    tokens_real, tokens_padded = trainer.token_counts()
    if not is_main:
        return None
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(unwrapped, PROJECTIONS_ATTR):
        delattr(unwrapped, PROJECTIONS_ATTR)  # a training aid, not part of the deployed student
    model_dir = run_dir / "model"
    trainer.save_model(str(model_dir))
    result = TrainResult(
        model_dir=str(model_dir.resolve()), global_step=trainer.state.global_step, resumed_from_step=resumed_from,
        train_loss=float(output.training_loss), train_runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        train_samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        val_metrics={k.replace("eval_", "val_"): float(v) for k, v in val.items()
                     if isinstance(v, (int, float)) and k not in TIMING_KEYS},
        world_size=world_size, tokens_real=tokens_real, tokens_padded=tokens_padded,
    )
    result.write(run_dir)
    return result


def lineage_tags(plan: dict, teacher_registered: dict | None, dcfg) -> dict[str, str]:
    """Registry tags tying a student version to its teacher (version, URI, local folder) and the recipe."""
    tags = {"distill.teacher": plan["teacher_ref"], "distill.teacher_dir": plan["teacher_dir"],
            "distill.student_kind": plan["student_kind"], "distill.student": plan["student"],
            "distill.layer_map": json.dumps(plan["layer_map"]), "distill.teacher_logits_key": plan["logits_key"],
            "distill.temperature": str(dcfg.temperature), "distill.alpha": str(dcfg.alpha),
            "distill.hidden_mse": str(dcfg.hidden_mse), "distill.epochs": str(dcfg.epochs)}
    if plan.get("teacher_version"):
        tags["distill.teacher_version"] = plan["teacher_version"]
    elif teacher_registered:  # the teacher is the model this run just registered
        tags["distill.teacher_version"] = f"{teacher_registered['name']}/{teacher_registered['version']}"
        tags["distill.teacher_uri"] = teacher_registered["uri"]
    return tags
