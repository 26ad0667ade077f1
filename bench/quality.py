"""Pipeline defaults vs a plain Hugging Face Trainer script: test accuracy and wall time, same split.

Reference: MiniLM-L6, one epoch, dynamic padding, batch 32, lr 5e-5, default Trainer settings.
Ours: the pipeline's `train` + `evaluate` stages with the default config (torchrun launch included).
Both train on the same train split of the full corpus and are scored on the same held-out test split.

    .venv/bin/python bench/quality.py [--max-rows N] [--set train.epochs=2 ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import comparison, write_results


def plain_trainer(split_dir: str, model_path: str, out_dir: Path) -> tuple[float, float]:
    """The reference script, as a user would write it from the transformers docs."""
    import numpy as np
    from datasets import load_from_disk
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    started = time.perf_counter()
    splits = load_from_disk(split_dir)
    labels = splits["train"].features["label"].names
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    encoded = splits.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    args = TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=1,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        learning_rate=5e-5,
        report_to="none",
        save_strategy="no",
        logging_steps=50,
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    logits = trainer.predict(encoded["test"]).predictions
    accuracy = float((np.asarray(logits).argmax(-1) == np.asarray(encoded["test"]["label"])).mean())
    return accuracy, time.perf_counter() - started


def ours(cfg, data, out_dir: Path) -> tuple[float, float, dict]:
    from textclf import stages

    started = time.perf_counter()
    trained = stages.train(cfg, data, out_dir, log_line=lambda line: None)
    report = stages.evaluate(cfg, trained.model_dir, data, out_dir)
    return report.metrics["accuracy"], time.perf_counter() - started, trained.val_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=None, help="Subsample the corpus (quick check).")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Config override for our arm, as in `textclf run --set` (e.g. train.epochs=2).",
    )
    args = parser.parse_args()

    from textclf import stages
    from textclf.config import apply_overrides, build_config
    from textclf.settings import packaged_model_path

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        tmp = Path(tmp)
        cfg = build_config(
            apply_overrides({"output_dir": str(tmp / "outputs"), "data": {"max_rows": args.max_rows}}, args.overrides)
        )
        raw = stages.ingest(cfg, tmp)
        data = stages.split(cfg, raw, tmp)
        print(f"split sizes {data.rows}", flush=True)
        ref_acc, ref_s = plain_trainer(data.path, str(packaged_model_path()), tmp / "plain")
        print(f"plain Trainer: accuracy {ref_acc:.4f} in {ref_s:.0f}s", flush=True)
        our_acc, our_s, val = ours(cfg, data, tmp / "ours")
        print(f"pipeline defaults: accuracy {our_acc:.4f} in {our_s:.0f}s (val {val})", flush=True)
    params = {
        "rows": data.rows,
        "reference": "MiniLM-L6, 1 epoch, dynamic padding, batch 32, lr 5e-5",
        "ours": cfg.train.model_dump(mode="json"),
    }
    write_results(
        "quality",
        params,
        {
            "accuracy_vs_plain_trainer": comparison(ref_acc, our_acc, "test accuracy", higher_is_better=True),
            "wall_time_vs_plain_trainer": comparison(ref_s, our_s, "s (train + test prediction)", higher_is_better=False),
        },
    )


if __name__ == "__main__":
    main()
