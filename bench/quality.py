"""Pipeline defaults vs a plain Hugging Face Trainer script and vs today's champion recipe: test accuracy, same split.

All arms share one split of the packaged corpus (the demo's: ingest -> split -> validate), one run, one machine:
  plain    the reference script a user writes from the transformers docs: MiniLM-L6, one epoch, dynamic padding,
           batch 32, lr 5e-5, default Trainer settings, on the un-augmented train split
  champion the recipe of the champion before the probe teacher (the old defaults): MiniLM-L6 fine-tuned by the
           pipeline (train.kind=finetune, 1.75 epochs, frozen word embeddings) on the augmented train split
  teacher  the pipeline's default `train` stage: the frozen MPNet-base probe (train.kind=probe) on the augmented split
  student  the pipeline's default `distill` stage from that teacher (its logits from the cached vectors)
Every arm is scored on the same held-out test split. The student's CPU throughput at batch 32 against the
teacher's comes from the distillation report (both measured in one process, tokenisation included).

    flock /tmp/textclf-cpu.lock .venv/bin/python bench/quality.py [--max-rows N] [--skip plain,champion] [--set k=v]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import comparison, write_results

ARMS = ("plain", "champion", "teacher", "student")


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


def trained_arm(cfg, data, out_dir: Path) -> dict:
    """The pipeline's `train` + `evaluate` stages: test accuracy, seconds, validation metrics, the model folder."""
    from textclf import stages

    started = time.perf_counter()
    trained = stages.train(cfg, data, out_dir, log_line=lambda line: None)
    report = stages.evaluate(cfg, trained.model_dir, data, out_dir)
    return {
        "accuracy": report.metrics["accuracy"],
        "macro_f1": report.metrics["macro_f1"],
        "seconds": time.perf_counter() - started,
        "val": trained.val_metrics,
        "model_dir": trained.model_dir,
        "throughput_b32": report.metrics.get("throughput_texts_per_s"),
    }


def student_arm(cfg, data, out_dir: Path, teacher_dir: str) -> dict:
    """The pipeline's `distill` + student evaluation (teacher vs student report) stages."""
    from textclf import stages

    started = time.perf_counter()
    student = stages.distill(cfg, data, out_dir, teacher_dir, log_line=lambda line: None)
    trained_s = time.perf_counter() - started
    evaluated = stages.evaluate_student(cfg, student, data)
    metrics = evaluated.comparison.metrics()
    return {
        "accuracy": evaluated.evaluation.metrics["accuracy"],
        "macro_f1": evaluated.evaluation.metrics["macro_f1"],
        "seconds": trained_s,
        "val": student.result.val_metrics,
        "logits_s": student.plan.logits_seconds,
        "student_throughput_b32": metrics["student_throughput_b32"],
        "teacher_throughput_b32": metrics["teacher_throughput_b32"],
        "student_onnx_throughput_b32": metrics.get("student_onnx_throughput_b32"),
        "agreement": metrics["agreement"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=None, help="Subsample the corpus (quick check).")
    parser.add_argument("--skip", default="", help=f"Comma-separated arms to leave out, of {', '.join(ARMS)}.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Config override for the teacher and student arms, as in `textclf run --set` (e.g. distill.epochs=2).",
    )
    args = parser.parse_args()
    skip = {a for a in args.skip.split(",") if a}
    if skip - set(ARMS):
        parser.error(f"--skip: unknown arm(s) {sorted(skip - set(ARMS))}; choose from {', '.join(ARMS)}")

    from textclf import stages
    from textclf.config import PACKAGED_MODEL, apply_overrides, build_config
    from textclf.settings import packaged_model_path

    got: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        tmp = Path(tmp)
        base = {"output_dir": str(tmp / "outputs"), "data": {"source": "packaged:rotten_tomatoes", "max_rows": args.max_rows}}
        cfg = build_config(apply_overrides(base, args.overrides))
        started = time.perf_counter()
        clean = stages.validate(cfg, stages.split(cfg, stages.ingest(cfg, tmp), tmp), tmp).data
        data = stages.augment(cfg, clean, tmp, log_line=lambda line: None).data
        data_s = time.perf_counter() - started
        print(f"split sizes {clean.rows}, augmented train {data.rows['train']} ({data_s:.0f}s)", flush=True)
        if "plain" not in skip:
            acc, seconds = plain_trainer(clean.path, str(packaged_model_path()), tmp / "plain")
            got["plain"] = {"accuracy": acc, "seconds": seconds}
            print(f"plain Trainer: accuracy {acc:.4f} in {seconds:.0f}s", flush=True)
        if "champion" not in skip:
            old = build_config(apply_overrides(base, ["train.kind=finetune", f"train.model={PACKAGED_MODEL}"]))
            got["champion"] = trained_arm(old, data, tmp / "champion")
            print(f"fine-tuned MiniLM (the old champion recipe): {_line(got['champion'])}", flush=True)
        if "teacher" not in skip or "student" not in skip:
            got["teacher"] = trained_arm(cfg, data, tmp / "teacher")
            print(f"teacher ({cfg.train.kind} {cfg.train.model}): {_line(got['teacher'])}", flush=True)
        if "student" not in skip:
            got["student"] = student_arm(cfg, data, tmp / "student", got["teacher"]["model_dir"])
            print(f"student ({cfg.distill.student_model or 'teacher layers'}): {_line(got['student'])}", flush=True)
    for arm in got.values():
        arm.pop("model_dir", None)

    def acc(arm: str) -> float | None:
        return got[arm]["accuracy"] if arm in got else None

    results: dict[str, dict] = {}
    if "teacher" in got and "teacher" not in skip:
        results["teacher_vs_plain_trainer"] = comparison(acc("plain"), got["teacher"]["accuracy"], "test accuracy", True)
        results["teacher_vs_current_champion"] = comparison(acc("champion"), got["teacher"]["accuracy"], "test accuracy", True)
    if "student" in got:
        student = got["student"]
        results["student_vs_plain_trainer"] = comparison(acc("plain"), student["accuracy"], "test accuracy", True)
        results["student_vs_current_champion"] = comparison(acc("champion"), student["accuracy"], "test accuracy", True)
        results["student_vs_teacher_throughput"] = comparison(
            student["teacher_throughput_b32"],
            student["student_throughput_b32"],
            "texts/s at batch 32 on CPU (torch, tokenisation included); goal ratio >= 5",
            True,
        )
    if "plain" in got and "teacher" in got and "student" in got:
        ours_s = got["teacher"]["seconds"] + got["student"]["seconds"]
        results["wall_time_vs_plain_trainer"] = comparison(
            got["plain"]["seconds"], ours_s, "s (teacher + student, train + test prediction)", False
        )
    params = {
        "rows": clean.rows,
        "augmented_train_rows": data.rows["train"],
        "plain": "MiniLM-L6, 1 epoch, dynamic padding, batch 32, lr 5e-5, un-augmented train split",
        "champion": "train.kind=finetune train.model=packaged:all-MiniLM-L6-v2 (the old defaults), augmented",
        "teacher": cfg.train.model_dump(mode="json"),
        "student": cfg.distill.model_dump(mode="json"),
        "arms": got,
    }
    write_results("quality", params, results)


def _line(arm: dict) -> str:
    return f"accuracy {arm['accuracy']:.4f}, macro-F1 {arm['macro_f1']:.4f}, {arm['seconds']:.0f}s, val {arm['val']}"


if __name__ == "__main__":
    main()
