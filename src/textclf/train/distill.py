"""Knowledge distillation: plan in the launching process, train in every torchrun rank.

`prepare_distillation` (launcher side) takes the resolved teacher, fills the teacher-logits cache
and builds the student's starting weights, then writes `distill_plan.json`. `run_distillation`
(each rank) is the fine-tuning run loop with `DistillRecipe`: another student, the cached teacher
logits as a train column, a distillation loss. Early stopping, best weights, checkpoints, resume
and sinks are fine-tuning's. Only rank 0 writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, load_from_disk
from torch import nn
from transformers import PreTrainedModel

from textclf.config import DistillConfig, TrainConfig
from textclf.errors import ConfigError
from textclf.modeling import load_classifier, load_trained
from textclf.tracking import MetricSink
from textclf.train.finetune import FinetuneRecipe, TextclfTrainer, TrainResult, rank_process, run_recipe
from textclf.train.losses import DistillWeights, distillation_loss, pooled_hidden_mse
from textclf.train.probe import probe_logits
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


@dataclass(frozen=True)
class ResolvedTeacher:
    dir: Path  # local HF folder
    ref: str  # what the user named: a folder, a models:/ URI, or the run's own model
    version: str | None  # registry version ("name/3") when the teacher came from the registry


def resolve_teacher(
    ref: str | None, trained_dir: str | None, dest: Path, fetch_registered: Callable[[str, Path], tuple[Path, str]]
) -> ResolvedTeacher:
    """The teacher named by `distill.teacher` (`ref`), or this run's model (`trained_dir`) when empty.

    `fetch_registered(uri, dest)` downloads a models:/ URI and returns (local folder, "name/version").
    """
    if not ref:
        if not trained_dir:
            raise ConfigError(
                "distill.teacher is empty and this run trained no model; set distill.teacher "
                "to a model folder or a registry URI such as models:/textclf@champion"
            )
        return ResolvedTeacher(Path(trained_dir), "this run's model", None)
    if ref.startswith("models:/"):
        local, version = fetch_registered(ref, Path(dest))
        found = sorted(p.parent for p in Path(local).rglob("config.json") if any(p.parent.glob("*.safetensors")))
        if not found:
            raise ConfigError(f"distill.teacher {ref}: the registered model holds no Hugging Face model folder")
        return ResolvedTeacher(found[0], ref, version)
    path = Path(ref).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"distill.teacher {ref}: not a trained model folder (no config.json); give a folder "
            "written by `textclf train` (…/model) or a models:/ URI"
        )
    return ResolvedTeacher(path, ref, None)


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Student layer i matches teacher layer ceil((i+1) * Lt / Ls) - 1 (the last ones always pair up)."""
    return [-(-(i + 1) * n_teacher // n_student) - 1 for i in range(n_student)]


def prepare_distillation(
    train: TrainConfig,
    distill: DistillConfig,
    data_dir: str,
    run_dir: Path,
    teacher: ResolvedTeacher,
    cache_root: Path,
    vector_cache: Path | None = None,
) -> DistillPlan:
    """Teacher logits cached for the train split, the student's start written: the plan. A probe teacher's
    logits come from its encoder's vectors in `vector_cache` (those its fit encoded are there already)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_split = load_from_disk(str(data_dir))["train"]
    labels = train_split.features["label"].names
    cached = TeacherLogitsCache(cache_root).get_or_compute(
        teacher.dir,
        list(train_split["text"]),
        train.max_length,
        distill.teacher_batch_size,
        teacher.version,
        shortcut=lambda texts: probe_logits(teacher.dir, texts, train.probe.batch_size, vector_cache),
    )
    if cached.meta["labels"] != labels:
        raise ConfigError(
            f"distill.teacher predicts labels {cached.meta['labels']} but the data has {labels}; "
            "use a teacher trained on the same label set"
        )
    n_teacher = json.loads((teacher.dir / "config.json").read_text())["num_hidden_layers"]
    if distill.student_model:
        student, kind = distill.student_model, "pretrained"
        model, _ = load_classifier(student, labels, train.pooling)
        layer_map = uniform_layer_map(model.config.num_hidden_layers, n_teacher)
        del model
    else:
        student_dir, keep = build_layer_student(str(teacher.dir), distill.student_layers, labels, run_dir / "student_init")
        student, kind, layer_map = str(student_dir), "layers", keep
    plan = DistillPlan(
        str(teacher.dir),
        teacher.ref,
        teacher.version,
        cached.path,
        cached.key,
        cached.hit,
        cached.seconds,
        student,
        kind,
        layer_map,
    )
    plan.write(run_dir)
    return plan


class DistillCollator:
    """The padding collator for token inputs; stacks the cached teacher logits [B, C]."""

    def __init__(self, pad: Callable[[list[dict]], dict]):
        self.pad = pad

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

    def __init__(
        self, *args, weights: DistillWeights, teacher: nn.Module | None = None, layer_map: list[int] | None = None, **kwargs
    ):
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
        if self.teacher is None:
            raise RuntimeError("the hidden-state distillation term needs the live teacher (DistillTrainer(teacher=...))")
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


def _attach_projections(student: PreTrainedModel, teacher: PreTrainedModel, n_pairs: int) -> None:
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    if ds != dt:
        # Learned Ds -> Dt maps; trained and checkpointed with the student, never saved as its weights.
        setattr(student, PROJECTIONS_ATTR, nn.ModuleList(nn.Linear(ds, dt) for _ in range(n_pairs)))


def _live_teacher(plan: DistillPlan, student, student_tokenizer):
    teacher, teacher_tokenizer = load_trained(plan.teacher_dir)
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ConfigError(
            "distill.hidden_mse > 0 needs a student with the teacher's tokenizer; set "
            "distill.hidden_mse=0 for a student with its own tokenizer"
        )
    teacher.eval().requires_grad_(False)
    _attach_projections(student, teacher, len(plan.layer_map))
    return teacher


class DistillRecipe(FinetuneRecipe):
    """Fine-tuning's run loop on the plan's student, with the teacher's logits as a train column."""

    stage = "distill"
    trainer_class = DistillTrainer
    remove_unused_columns = False  # keep teacher_logits; DistillCollator drops what the model can't take
    save_exclude = (f"{PROJECTIONS_ATTR}.",)  # a training aid, not part of the deployed student

    def __init__(self, distill: DistillConfig, plan: DistillPlan):
        self.distill = distill
        self.plan = plan
        self.teacher: nn.Module | None = None

    def load_model(self, cfg: TrainConfig, labels: list[str]):
        student, tokenizer = load_classifier(self.plan.student, labels, cfg.pooling)
        if self.distill.hidden_mse > 0:
            self.teacher = _live_teacher(self.plan, student, tokenizer)
        return student, tokenizer

    def collator(self, tokenizer):
        return DistillCollator(super().collator(tokenizer))

    def train_dataset(self, encoded: Dataset) -> Dataset:
        logits = np.load(self.plan.teacher_logits)
        if logits.shape[0] != len(encoded):
            raise ConfigError(
                f"cached teacher logits have {logits.shape[0]} rows but the train split has "
                f"{len(encoded)}; delete {self.plan.teacher_logits} and re-run"
            )
        return encoded.add_column("teacher_logits", logits.tolist())

    def trainer_kwargs(self) -> dict:
        d = self.distill
        return {
            "weights": DistillWeights(d.temperature, d.alpha, d.hidden_mse),
            "teacher": self.teacher,
            "layer_map": self.plan.layer_map,
        }


def student_train_config(train: TrainConfig, distill: DistillConfig) -> TrainConfig:
    """The student's TrainConfig: `train` with the student's epochs, learning rate and batch size."""
    return train.model_copy(
        update={"epochs": distill.epochs, "learning_rate": distill.learning_rate, "batch_size": distill.batch_size}
    )


def run_distillation(
    train: TrainConfig, distill: DistillConfig, data_dir: Path, run_dir: Path, cache_dir: Path, sink: MetricSink | None = None
) -> TrainResult | None:
    """Train the student of `run_dir/distill_plan.json`; rank 0 returns the result, other ranks None."""
    run_dir = Path(run_dir)
    with rank_process(run_dir):
        recipe = DistillRecipe(distill, DistillPlan.read(run_dir))
        return run_recipe(student_train_config(train, distill), recipe, Path(data_dir), run_dir, Path(cache_dir), sink)
