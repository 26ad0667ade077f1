"""Fine-tuning with the Hugging Face Trainer; runs inside every torchrun rank.

Only rank 0 writes: metrics (to the sinks it is given), the final model and `result.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from textclf.config import TrainConfig
from textclf.evaluate import classification_metrics
from textclf.modeling import load_classifier
from textclf.settings import cpu_threads
from textclf.tracking import MetricSink, NullSink

RESULT_FILE = "result.json"


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

    def write(self, run_dir: Path) -> None:
        tmp = run_dir / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(run_dir / RESULT_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> TrainResult:
        return cls(**json.loads((Path(run_dir) / RESULT_FILE).read_text()))


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as set by torchrun; a plain process is rank 0 of 1."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def pick_precision(requested: str) -> dict[str, bool]:
    if not torch.cuda.is_available() or requested == "fp32":
        return {"bf16": False, "fp16": False}
    if requested == "auto":
        requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": requested == "bf16", "fp16": requested == "fp16"}


def tokenized_cache_key(data_fingerprint: str, tokenizer_name: str, max_length: int) -> str:
    raw = f"{data_fingerprint}|{tokenizer_name}|{max_length}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def tokenize_splits(splits: DatasetDict, tokenizer, max_length: int, cache_dir: Path) -> DatasetDict:
    """Tokenise once into Arrow files keyed by data + tokenizer + length; later runs reuse them."""
    name = getattr(tokenizer, "name_or_path", "tokenizer")
    out = {}
    for split, ds in splits.items():
        key = tokenized_cache_key(ds._fingerprint, f"{name}|{len(tokenizer)}", max_length)
        cache_dir.mkdir(parents=True, exist_ok=True)

        def encode(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            enc["length"] = [len(ids) for ids in enc["input_ids"]]
            return enc

        keep = {"input_ids", "attention_mask", "token_type_ids", "length", "label"}
        out[split] = ds.map(
            encode, batched=True, batch_size=1000,
            remove_columns=[c for c in ds.column_names if c not in keep],
            cache_file_name=str(cache_dir / f"{split}-{key}.arrow"), load_from_cache_file=True,
            desc=f"tokenize {split}",
        )
    return DatasetDict(out)


class SinkCallback(TrainerCallback):
    """Forward Trainer logs to a metric sink and print one progress line per log."""

    def __init__(self, sink: MetricSink, printer=print):
        self.sink = sink
        self.printer = printer
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
        self.printer(f"[train] step {state.global_step}/{state.max_steps} "
                     f"epoch {logs.get('epoch', 0):.2f} {shown} ({time.perf_counter() - self.started:.0f}s)",
                     flush=True)


def _metrics_fn(eval_pred):
    logits, labels = eval_pred
    return classification_metrics(labels, np.asarray(logits).argmax(axis=-1))


def training_arguments(cfg: TrainConfig, run_dir: Path, n_train: int, world_size: int) -> TrainingArguments:
    eval_strategy = "steps" if cfg.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.checkpoint_steps,
        save_total_limit=cfg.keep_checkpoints,
        load_best_model_at_end=cfg.early_stopping_patience is not None,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=cfg.dataloader_workers,
        ddp_backend=None if torch.cuda.is_available() else "gloo",
        ddp_timeout=600,
        ddp_find_unused_parameters=False,
        torch_compile=cfg.torch_compile,
        gradient_checkpointing=cfg.gradient_checkpointing,
        optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch",
        tf32=True if torch.cuda.is_available() else None,
        save_only_model=False,
        **pick_precision(cfg.precision),
    )


def run_training(cfg: TrainConfig, data_dir: Path, run_dir: Path, cache_dir: Path,
                 sink: MetricSink | None = None) -> TrainResult | None:
    """Train on the splits saved in `data_dir`; rank 0 returns the result, other ranks None."""
    rank, local_rank, world_size = dist_env()
    is_main = rank == 0
    sink = sink if (sink is not None and is_main) else NullSink()
    if not torch.cuda.is_available():
        # Share the cores between the local ranks instead of oversubscribing them.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        torch.set_num_threads(max(1, cpu_threads() // local_world))
    splits = load_from_disk(str(data_dir))
    labels = splits["train"].features["label"].names
    model, tokenizer = load_classifier(cfg.model, labels)
    args = training_arguments(cfg, run_dir, len(splits["train"]), world_size)
    with args.main_process_first(desc="tokenize"):
        encoded = tokenize_splits(DatasetDict(train=splits["train"], validation=splits["validation"]),
                                  tokenizer, cfg.max_length, cache_dir)
    callbacks: list[TrainerCallback] = [SinkCallback(sink, print if is_main else (lambda *a, **k: None))]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = Trainer(
        model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        compute_metrics=_metrics_fn, callbacks=callbacks,
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    resumed_from = int(last.rsplit("-", 1)[-1]) if last else 0
    if is_main and last:
        print(f"[train] resuming from {last} (step {resumed_from})", flush=True)
    output = trainer.train(resume_from_checkpoint=last)
    val = trainer.evaluate()
    if not is_main:
        return None
    model_dir = run_dir / "model"
    trainer.save_model(str(model_dir))  # safetensors weights + config (label names) + tokenizer
    result = TrainResult(
        model_dir=str(model_dir.resolve()),
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
        train_loss=float(output.training_loss),
        train_runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        train_samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        val_metrics={k.replace("eval_", "val_"): float(v) for k, v in val.items() if isinstance(v, (int, float))},
        world_size=world_size,
    )
    result.write(run_dir)
    return result
