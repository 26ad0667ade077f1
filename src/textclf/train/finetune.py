"""Fine-tuning with the Hugging Face Trainer; runs inside every torchrun rank.

`run_recipe` is the one run loop (trainer, early stopping, best weights, resume, result); a
`FinetuneRecipe` says what it trains, and distillation overrides a few of its hooks. Only rank 0
writes: metrics (to the sinks it is given), the best weights, the final model and `result.json`.
The other ranks compute and hold a `NullSink`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging as hf_logging

from textclf.config import TrainConfig
from textclf.evaluate import classification_metrics
from textclf.modeling import load_classifier
from textclf.settings import cpu_threads
from textclf.tracking import MetricSink, NullSink
from textclf.train.failures import recording_failures
from textclf.train.process import die_with_parent
from textclf.train.sampling import SeededLengthGroupedSampler

RESULT_FILE = "result.json"
TIMING_KEYS = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch"}
TOKENIZE_VERSION = "1"  # bump when `encode` below changes what it writes


@dataclass
class TrainResult:
    model_dir: str
    global_step: int
    resumed_from_step: int
    train_loss: float
    train_runtime_s: float
    train_samples_per_s: float
    val_metrics: dict[str, float]
    world_size: int
    best_step: int | None = None
    tokens_real: int = 0  # non-padding tokens trained on in this invocation, all ranks
    tokens_padded: int = 0  # tokens fed to the model including padding, all ranks
    tokenize_cache_hits: dict[str, bool] = field(default_factory=dict)
    eval_runtime_s: float = 0.0  # evaluations inside this invocation's train_runtime_s

    def write(self, run_dir: Path) -> None:
        tmp = run_dir / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(run_dir / RESULT_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> TrainResult:
        return cls(**json.loads((Path(run_dir) / RESULT_FILE).read_text()))


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as set by torchrun; a plain process is rank 0 of 1."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def pick_precision(requested: str) -> dict[str, bool]:
    if not torch.cuda.is_available() or requested == "fp32":
        return {"bf16": False, "fp16": False}
    if requested == "auto":
        requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": requested == "bf16", "fp16": requested == "fp16"}


def cpu_threads_per_rank() -> int:
    """Cores of this node split over its local ranks, so ranks do not oversubscribe them."""
    return max(1, cpu_threads() // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def resolve_workers(requested: int | str) -> int:
    """'auto': none on CPU (collating pre-tokenised rows is cheap; workers would steal the
    cores the matmuls use), a few per GPU to overlap collation and host-to-device copies."""
    if requested != "auto":
        return int(requested)
    return min(4, cpu_threads_per_rank() - 1) if torch.cuda.is_available() else 0


# ---- tokenisation cache -------------------------------------------------------------------------


def tokenizer_digest(tokenizer) -> str:
    """Content digest of a tokenizer (vocabulary, normaliser, truncation rules), not its path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raw = f"{tokenizer.name_or_path}|{len(tokenizer)}"
    else:
        # Calling the tokenizer rewrites its truncation/padding state: leave those out of the key.
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in {"truncation", "padding"}}
        raw = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def tokenized_cache_key(data_fingerprint: str, tokenizer_id: str, max_length: int) -> str:
    raw = f"{data_fingerprint}|{tokenizer_id}|{max_length}|v{TOKENIZE_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def tokenize_cached(splits: DatasetDict, tokenizer, max_length: int, cache_dir: Path) -> tuple[DatasetDict, dict[str, bool]]:
    """Tokenise once into Arrow files keyed by data + tokenizer + length; later runs memory-map them.

    Returns the encoded splits and, per split, whether the cache already held it.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    tok_id = tokenizer_digest(tokenizer)

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    keep = {"input_ids", "attention_mask", "token_type_ids", "length", "label"}
    out, hits = {}, {}
    for split, ds in splits.items():
        path = cache_dir / f"{split}-{tokenized_cache_key(ds._fingerprint, tok_id, max_length)}.arrow"
        hits[split] = path.is_file()
        if hits[split]:
            out[split] = Dataset.from_file(str(path))
            continue
        # datasets writes to a temporary file and renames it: readers never see half a file.
        out[split] = ds.map(
            encode,
            batched=True,
            batch_size=1000,
            cache_file_name=str(path),
            remove_columns=[c for c in ds.column_names if c not in keep],
            desc=f"tokenize {split}",
        )
    return DatasetDict(out), hits


# ---- callbacks ------------------------------------------------------------------------------------


class SinkCallback(TrainerCallback):
    """Forward Trainer logs to a metric sink and print one progress line per log."""

    def __init__(self, sink: MetricSink, printer=print, stage: str = "train"):
        self.sink = sink
        self.printer = printer
        self.stage = stage
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            name = key if key.startswith("eval_") else f"train_{key}" if key in {"loss", "grad_norm"} else key
            metrics[name.replace("eval_", "val_")] = float(value)
        self.sink.log(metrics, state.global_step)
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch")
        self.printer(
            f"[{self.stage}] step {state.global_step}/{state.max_steps} "
            f"epoch {logs.get('epoch', 0):.2f} {shown} ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )


def save_weights(model, target: Path, exclude: tuple[str, ...] = ()) -> None:
    """`save_pretrained` without the state-dict entries under `exclude` (training aids, not the model)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(exclude)} if exclude else None
    model.save_pretrained(str(target), state_dict=state)


class BestWeightsCallback(TrainerCallback):
    """Keep the weights of the best validation score in `folder/step-N` (rank 0 writes).

    Checkpoints are for resuming (every N steps, last K kept); the best weights are separate, so
    evaluation and checkpoint intervals need not line up. The trainer state's `best_metric` /
    `best_global_step` (saved in each checkpoint) say which weights are current after a resume.
    """

    def __init__(self, folder: Path, metric: str, greater_is_better: bool, is_main: bool, exclude: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.exclude = exclude  # state-dict prefixes left out of the saved weights
        self.key = f"eval_{metric}"
        self.greater = greater_is_better
        self.is_main = is_main
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.last_eval_step: int | None = None
        self.last_metrics: dict[str, float] = {}
        self.eval_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.best_step, self.best_value = state.best_global_step or None, state.best_metric
        if self.is_main and self.folder.is_dir():
            for stale in self.folder.glob("step-*"):  # written after the checkpoint we resumed from
                if stale.name != f"step-{self.best_step}":
                    shutil.rmtree(stale, ignore_errors=True)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        self.last_eval_step, self.last_metrics = state.global_step, metrics
        self.eval_seconds += metrics.get("eval_runtime", 0.0)
        value = metrics.get(self.key)
        if value is None:
            return
        better = self.best_value is None or (value > self.best_value if self.greater else value < self.best_value)
        if not better:
            return
        self.best_step, self.best_value = state.global_step, value
        if self.is_main:
            target = self.folder / f"step-{state.global_step}"
            save_weights(model, target, self.exclude)
            (target / "val_metrics.json").write_text(json.dumps(metrics))
            for other in self.folder.glob("step-*"):
                if other != target:
                    shutil.rmtree(other, ignore_errors=True)

    def best_dir(self) -> Path | None:
        return self.folder / f"step-{self.best_step}" if self.best_step is not None else None


class TextclfTrainer(Trainer):
    """Trainer with a resume-safe length-grouped sampler and a count of real vs padded tokens."""

    def __init__(self, *args, train_lengths: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_lengths = train_lengths
        self.tokens_real = torch.zeros((), dtype=torch.long, device=self.args.device)
        self.tokens_padded = 0

    def _get_train_sampler(self, train_dataset=None):
        if self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)
        # One optimizer step's examples: DDP shards consecutive per-device batches over ranks and
        # accumulation takes the next ones, so N ranks x A steps see what one process with an N x A
        # times larger batch sees.
        global_batch = self.args.per_device_train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps
        return SeededLengthGroupedSampler(self.train_lengths, global_batch, self.args.data_seed or self.args.seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        if mask is not None:
            self.tokens_real += mask.sum()  # stays on the device: no sync per step
            self.tokens_padded += mask.numel()
        return super().training_step(model, inputs, num_items_in_batch)

    def token_counts(self) -> tuple[int, int]:
        """(real, padded) tokens over all ranks."""
        counts = torch.stack([self.tokens_real, torch.tensor(self.tokens_padded, device=self.tokens_real.device)])
        counts = self.accelerator.reduce(counts, reduction="sum")
        return int(counts[0]), int(counts[1])


def _metrics_fn(eval_pred):
    logits, labels = eval_pred
    return classification_metrics(labels, np.asarray(logits).argmax(axis=-1))


# ---- arguments and checkpoints ------------------------------------------------------------------


def training_arguments(cfg: TrainConfig, run_dir: Path) -> TrainingArguments:
    """Trainer arguments from the config."""
    cuda = torch.cuda.is_available()
    tf32 = cuda and torch.cuda.get_device_capability()[0] >= 8
    workers = resolve_workers(cfg.dataloader_workers)
    precision = pick_precision(cfg.precision)
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a value < 1 is a share of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        # TextclfTrainer replaces transformers' sampler with a resume-safe one; a plain Trainer
        # given these arguments still groups by length.
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if cfg.eval_steps else "epoch",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.checkpoint_steps,
        save_total_limit=cfg.keep_checkpoints,
        # Best weights are kept by BestWeightsCallback; the state still tracks the best metric.
        load_best_model_at_end=False,
        metric_for_best_model=cfg.best_metric,
        greater_is_better=cfg.best_metric != "loss",
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives a resume
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",  # only our rank-0 sinks log: no per-rank MLflow runs
        disable_tqdm=True,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=cuda,
        ddp_backend=("nccl" if cuda else "gloo") if dist_env()[2] > 1 else None,
        # Without use_cpu, accelerate treats CPU ranks as unrelated single processes: no DDP
        # wrapper, no data sharding, every rank trains alone on everything.
        use_cpu=not cuda,
        ddp_timeout=cfg.ddp_timeout_s,
        ddp_find_unused_parameters=False,
        torch_compile=cfg.torch_compile,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name (gradient_checkpointing: gone in v6)
        optim="adamw_torch_fused",
        tf32=True if tf32 else None,
        bf16=precision["bf16"],
        fp16=precision["fp16"],
    )


def init_distributed(timeout_s: int) -> None:
    """Join the process group with our timeout (accelerate's CPU path would use gloo's 30 min)."""
    _, local_rank, world_size = dist_env()
    if world_size == 1 or torch.distributed.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(seconds=timeout_s))


def last_complete_checkpoint(folder: Path) -> Path | None:
    """Newest `checkpoint-N` that holds its trainer state (written last): a kill mid-save is skipped."""
    if not Path(folder).is_dir():
        return None
    found = []
    for path in Path(folder).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rsplit("-", 1)[-1]
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return max(found)[1] if found else None


# ---- the training run ---------------------------------------------------------------------------


class FinetuneRecipe:
    """What the run loop trains. `distill.DistillRecipe` overrides these hooks and keeps the loop
    (setfit's DistillationTrainer over its Trainer), so both stages stop early, keep the best
    weights, resume and report the same way."""

    stage = "train"  # log prefix
    trainer_class: type[TextclfTrainer] = TextclfTrainer
    remove_unused_columns = True  # False when `train_dataset` adds columns the collator consumes
    save_exclude: tuple[str, ...] = ()  # state-dict prefixes of training aids, never saved as the model

    def load_model(self, cfg: TrainConfig, labels: list[str]):
        """(model, tokenizer) to train; called once the seed is set."""
        model, tokenizer = load_classifier(cfg.model, labels, cfg.pooling)
        if cfg.freeze_embeddings:
            model.get_input_embeddings().requires_grad_(False)
        return model, tokenizer

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None)

    def train_dataset(self, encoded: Dataset) -> Dataset:
        """The tokenised train split plus any columns the loss reads."""
        return encoded

    def trainer_kwargs(self) -> dict:
        """Extra keyword arguments of `trainer_class` (asked after `load_model`)."""
        return {}


def build_trainer(
    cfg: TrainConfig,
    data_dir: Path,
    run_dir: Path,
    cache_dir: Path,
    sink: MetricSink | None = None,
    recipe: FinetuneRecipe | None = None,
) -> tuple[TextclfTrainer, BestWeightsCallback, dict[str, bool]]:
    """Everything `run_recipe` trains with (fine-tuning unless `recipe` says otherwise); tests and
    benchmarks build the same trainer."""
    recipe = recipe or FinetuneRecipe()
    rank, _, world_size = dist_env()
    is_main = rank == 0
    sink = sink if (sink is not None and is_main) else NullSink()
    hf_logging.disable_progress_bar()  # per-save "Writing model shards" bars: noise in the task log
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads_per_rank())
    splits = load_from_disk(str(data_dir))
    labels = splits["train"].features["label"].names
    init_distributed(cfg.ddp_timeout_s)
    set_seed(cfg.seed)  # a fresh classification head is drawn here, before the Trainer seeds
    model, tokenizer = recipe.load_model(cfg, labels)
    tokenizer.model_max_length = cfg.max_length  # saved with the model: serving truncates like training
    # Sequence-classification heads return a per-batch mean and ignore `num_items_in_batch`; left
    # to guess, the Trainer would treat it as a sum: multiply it by the world size (DDP) and skip
    # the division by grad_accum_steps, so gradients (and logged losses) would grow with both and
    # clipping would cut different steps than in one process.
    model.accepts_loss_kwargs = False
    args = training_arguments(cfg, run_dir)
    args.remove_unused_columns = recipe.remove_unused_columns
    with args.main_process_first(desc="tokenize"):
        encoded, hits = tokenize_cached(
            DatasetDict(train=splits["train"], validation=splits["validation"]), tokenizer, cfg.max_length, cache_dir
        )
    say = print if is_main else (lambda *a, **k: None)
    best = BestWeightsCallback(run_dir / "best", cfg.best_metric, cfg.best_metric != "loss", is_main, recipe.save_exclude)
    callbacks: list[TrainerCallback] = [SinkCallback(sink, say, recipe.stage), best]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = recipe.trainer_class(
        model=model,
        args=args,
        train_dataset=recipe.train_dataset(encoded["train"]),
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=recipe.collator(tokenizer),
        compute_metrics=_metrics_fn,
        callbacks=callbacks,
        train_lengths=encoded["train"]["length"] if cfg.group_by_length else None,
        **recipe.trainer_kwargs(),
    )
    trainer.remove_callback(PrinterCallback)  # SinkCallback prints one line per log instead
    say(
        f"[{recipe.stage}] world_size={world_size} device={args.device} backend={args.ddp_backend} "
        f"precision={'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'} "
        f"threads/rank={torch.get_num_threads()} workers={args.dataloader_num_workers} "
        f"attention={getattr(model.config, '_attn_implementation', '?')} "
        f"tokenize_cache={'hit' if all(hits.values()) else 'miss'}",
        flush=True,
    )
    return trainer, best, hits


@contextmanager
def rank_process(run_dir: Path) -> Iterator[None]:
    """Around one rank's work: it dies with torchrun, and its exception is recorded for the launcher."""
    if "LOCAL_RANK" in os.environ:
        die_with_parent()  # torchrun killed (kill -9, preemption) -> this rank goes too, no orphan
    with recording_failures(run_dir):
        yield


def run_training(
    cfg: TrainConfig, data_dir: Path, run_dir: Path, cache_dir: Path, sink: MetricSink | None = None
) -> TrainResult | None:
    """Fine-tune on the splits saved in `data_dir`; rank 0 returns the result, other ranks None."""
    run_dir = Path(run_dir)
    with rank_process(run_dir):
        return run_recipe(cfg, FinetuneRecipe(), Path(data_dir), run_dir, Path(cache_dir), sink)


def run_recipe(
    cfg: TrainConfig, recipe: FinetuneRecipe, data_dir: Path, run_dir: Path, cache_dir: Path, sink: MetricSink | None = None
) -> TrainResult | None:
    """The run loop: resume from the newest complete checkpoint in `run_dir/checkpoints` if any, train,
    keep the best (`select_best`) or last weights in `run_dir/model`; rank 0 writes and returns the result."""
    rank, _, world_size = dist_env()
    trainer, best, hits = build_trainer(cfg, data_dir, run_dir, cache_dir, sink, recipe)
    if trainer.args.output_dir is None:  # training_arguments always sets it
        raise RuntimeError("the trainer has no output_dir: no checkpoints to resume from or write")
    last = last_complete_checkpoint(Path(trainer.args.output_dir))
    resumed_from = int(last.name.rsplit("-", 1)[-1]) if last else 0
    if rank == 0 and last:
        print(f"[{recipe.stage}] resuming from {last} (step {resumed_from})", flush=True)
    output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    eval_in_train = best.eval_seconds
    if best.last_eval_step != trainer.state.global_step:
        trainer.evaluate()  # score the final weights too, so they compete for "best"
    if rank == 0 and sink is not None:
        sink.close()  # the last metrics are in: send what a tracking outage held back (bounded wait)
    tokens_real, tokens_padded = trainer.token_counts()
    # the best weights' folder when they are not the last ones (None: keep the last)
    best_dir = best.best_dir() if cfg.select_best and best.best_step != trainer.state.global_step else None
    if rank != 0:
        return None
    model_dir = run_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    if best_dir is not None:
        shutil.copytree(best_dir, model_dir)
        val = json.loads((model_dir / "val_metrics.json").read_text())
        print(
            f"[{recipe.stage}] final model = best weights of step {best.best_step} ({cfg.best_metric}={best.best_value:.4g})",
            flush=True,
        )
    else:
        save_weights(trainer.accelerator.unwrap_model(trainer.model), model_dir, recipe.save_exclude)
        val = best.last_metrics
    tokenizer = trainer.processing_class
    if tokenizer is None:  # build_trainer always passes the tokenizer
        raise RuntimeError("the trainer has no tokenizer (processing_class) to save with the model")
    tokenizer.save_pretrained(str(model_dir))  # with model_max_length = cfg.max_length
    result = TrainResult(
        model_dir=str(model_dir.resolve()),
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
        train_loss=float(output.training_loss),
        train_runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        train_samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        val_metrics={k.replace("eval_", "val_"): float(v) for k, v in val.items() if k not in TIMING_KEYS},
        world_size=world_size,
        best_step=best.best_step,
        tokens_real=tokens_real,
        tokens_padded=tokens_padded,
        tokenize_cache_hits=hits,
        eval_runtime_s=eval_in_train,
    )
    result.write(run_dir)
    return result
