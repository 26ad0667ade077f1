"""Held-out evaluation: metrics from predictions, and evaluating a trained model on a split."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from sklearn.metrics import accuracy_score, f1_score

from textclf.modeling import load_trained, predict_proba


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy and macro-F1 (every class counts the same, whatever its size)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


@dataclass
class EvalReport:
    split: str
    n: int
    metrics: dict[str, float]
    seconds: float
    labels: list[str] = field(default_factory=list)

    def prefixed(self) -> dict[str, float]:
        return {f"{self.split}_{k}": v for k, v in self.metrics.items()}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def evaluate_model(model_dir: str | Path, data_dir: str | Path, split: str = "test",
                   batch_size: int = 128, max_length: int = 128, progress=None) -> EvalReport:
    """Predict `split` of the saved splits with the model in `model_dir` and score it."""
    dataset = load_from_disk(str(data_dir))[split]
    model, tokenizer = load_trained(model_dir)
    started = time.perf_counter()
    preds = predict_proba(model, tokenizer, list(dataset["text"]), batch_size=batch_size,
                          max_length=max_length, progress=progress)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(dataset["label"], preds.ids)
    metrics["texts_per_s"] = len(dataset) / seconds if seconds > 0 else 0.0
    return EvalReport(split=split, n=len(dataset), metrics=metrics, seconds=seconds, labels=preds.labels)
