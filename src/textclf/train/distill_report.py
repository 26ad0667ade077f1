"""Teacher vs student, side by side: quality, size and CPU speed, measured in one process."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from datasets import load_from_disk

from textclf.evaluate import classification_metrics
from textclf.modeling import load_trained, predict_proba
from textclf.train.student import count_parameters

if TYPE_CHECKING:
    from textclf.train.onnx_export import OnnxProfile


@dataclass
class ModelProfile:
    accuracy: float
    macro_f1: float
    params: int
    size_mb: float  # weight files on disk
    latency_p50_ms: float  # batch 1, tokenisation included
    latency_p95_ms: float
    throughput_b32: float  # texts/s at batch 32, tokenisation included


@dataclass
class DistillReport:
    teacher: ModelProfile
    student: ModelProfile
    agreement: float  # share of test texts where both predict the same class
    n_test: int
    onnx: OnnxProfile | None = None  # the student exported to ONNX, run by onnxruntime (distill.onnx_export)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for MLflow: teacher_accuracy, student_latency_p50_ms, ..., agreement."""
        out = {f"{who}_{k}": float(v) for who in ("teacher", "student")
               for k, v in asdict(getattr(self, who)).items()}
        out["agreement"] = self.agreement
        out["speedup_b32"] = self.student.throughput_b32 / self.teacher.throughput_b32
        if self.onnx is not None:
            out.update({f"student_onnx_{k}": float(getattr(self.onnx, k)) for k in ONNX_MEASURES})
            out["student_onnx_parity_max_abs_diff"] = self.onnx.parity_max_abs_diff
            out["student_onnx_export_s"] = self.onnx.export_s
        return out

    def rows(self) -> list[dict]:
        """One row per measure, teacher and student columns (a Prefect table artifact)."""
        t, s = asdict(self.teacher), asdict(self.student)
        rows = [{"measure": k, "teacher": _fmt(t[k]), "student": _fmt(s[k]),
                 "student/teacher": f"{s[k] / t[k]:.3f}" if t[k] else "n/a"} for k in t]
        rows.append({"measure": "agreement", "teacher": "", "student": f"{self.agreement:.4f}",
                     "student/teacher": ""})
        if self.onnx is not None:  # one more column: the same student run by onnxruntime
            for row in rows:
                k = row["measure"]
                row["student (onnx)"] = _fmt(getattr(self.onnx, k)) if k in ONNX_MEASURES else ""
            rows.append({"measure": "onnx max |logit diff| vs torch", "teacher": "", "student": "",
                         "student/teacher": "", "student (onnx)": f"{self.onnx.parity_max_abs_diff:.2e}"})
        return rows

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**asdict(self), "metrics": self.metrics()}, indent=2))
        return path


ONNX_MEASURES = ("size_mb", "latency_p50_ms", "latency_p95_ms", "throughput_b32")


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def weights_size_mb(model_dir: Path) -> float:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors")) / 1e6


@torch.inference_mode()
def latency_ms(model, tokenizer, texts: list[str], max_length: int) -> tuple[float, float]:
    """p50 and p95 of single-text predictions (tokenise + forward), after a short warm-up."""
    model.eval()
    for text in texts[:5]:
        model(**tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt"))
    times = []
    for text in texts:
        start = time.perf_counter()
        model(**tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt"))
        times.append((time.perf_counter() - start) * 1000)
    q = statistics.quantiles(times, n=20, method="inclusive")  # 19 cut points: 5%, 10%, ..., 95%
    return statistics.median(times), q[18]


@torch.inference_mode()
def throughput(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32, repeats: int = 3) -> float:
    """Texts per second in batches of `batch_size` in arrival order (padding as traffic would have it).

    Median of `repeats` passes: other processes on a shared machine disturb single passes.
    """
    model.eval()
    model(**tokenizer(texts[:batch_size], truncation=True, max_length=max_length, padding=True,
                      return_tensors="pt"))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            model(**tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt"))
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


def profile(model_dir: Path, texts: list[str], labels: list[int], max_length: int, latency_texts: int,
            throughput_texts: int = 512) -> tuple[ModelProfile, np.ndarray]:
    """Profile of one model on the test texts, and its predicted class ids."""
    model, tokenizer = load_trained(model_dir)
    model.to("cpu")
    preds = predict_proba(model, tokenizer, texts, max_length=max_length).ids
    quality = classification_metrics(labels, preds)
    p50, p95 = latency_ms(model, tokenizer, texts[:latency_texts], max_length)
    speed = throughput(model, tokenizer, texts[:throughput_texts], max_length)
    return ModelProfile(quality["accuracy"], quality["macro_f1"], count_parameters(model),
                        weights_size_mb(Path(model_dir)), p50, p95, speed), preds


def compare_teacher_student(teacher_dir: Path, student_dir: Path, data_dir: Path, split: str = "test",
                            max_length: int = 128, latency_texts: int = 100, onnx: bool = False) -> DistillReport:
    """Both models on the same split, one after the other in this process (CPU timings).

    With `onnx`, the student is also exported to `student_dir/model.onnx`, checked and timed.
    """
    dataset = load_from_disk(str(data_dir))[split]
    texts, labels = list(dataset["text"]), list(dataset["label"])
    teacher, t_preds = profile(teacher_dir, texts, labels, max_length, latency_texts)
    student, s_preds = profile(student_dir, texts, labels, max_length, latency_texts)
    onnx_profile = None
    if onnx:
        from textclf.train.onnx_export import export_and_profile

        onnx_profile = export_and_profile(Path(student_dir), texts, max_length, latency_texts)
    return DistillReport(teacher, student, float((t_preds == s_preds).mean()), len(texts), onnx_profile)
