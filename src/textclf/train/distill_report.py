"""Teacher vs student, side by side: quality, size and CPU speed, measured in one process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from datasets import load_from_disk

from textclf.evaluate import classification_metrics
from textclf.modeling import load_trained, predict_proba, saved_max_length
from textclf.timing import Speed, measure_speed
from textclf.train.onnx_export import OnnxProfile, export_and_profile
from textclf.train.student import count_parameters

REPORT_BATCH_SIZE = 32  # the b32 of throughput_b32 (teacher, student and ONNX alike)


@dataclass
class ModelProfile:
    accuracy: float
    macro_f1: float
    params: int
    size_mb: float  # weight files on disk
    latency_p50_ms: float  # batch 1, tokenisation included
    latency_p95_ms: float
    throughput_b32: float  # texts/s at batch 32, tokenisation included

    @classmethod
    def measured(cls, quality: dict[str, float], params: int, size_mb: float, speed: Speed) -> ModelProfile:
        """The speed fields are timing's, under the report's names."""
        return cls(
            quality["accuracy"],
            quality["macro_f1"],
            params,
            size_mb,
            speed.latency_p50_ms,
            speed.latency_p95_ms,
            speed.throughput_texts_per_s,
        )


@dataclass
class DistillReport:
    teacher: ModelProfile
    student: ModelProfile
    agreement: float  # share of test texts where both predict the same class
    n_test: int
    onnx: OnnxProfile | None = None  # the student exported to ONNX, run by onnxruntime (distill.onnx_export)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for MLflow: teacher_accuracy, student_latency_p50_ms, ..., agreement."""
        out = {f"{who}_{k}": float(v) for who in ("teacher", "student") for k, v in asdict(getattr(self, who)).items()}
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
        rows = [
            {
                "measure": k,
                "teacher": _fmt(t[k]),
                "student": _fmt(s[k]),
                "student/teacher": f"{s[k] / t[k]:.3f}" if t[k] else "n/a",
            }
            for k in t
        ]
        rows.append({"measure": "agreement", "teacher": "", "student": f"{self.agreement:.4f}", "student/teacher": ""})
        if self.onnx is not None:  # one more column: the same student run by onnxruntime
            for row in rows:
                k = row["measure"]
                row["student (onnx)"] = _fmt(getattr(self.onnx, k)) if k in ONNX_MEASURES else ""
            rows.append(
                {
                    "measure": "onnx max |logit diff| vs torch",
                    "teacher": "",
                    "student": "",
                    "student/teacher": "",
                    "student (onnx)": f"{self.onnx.parity_max_abs_diff:.2e}",
                }
            )
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


def profile(
    model_dir: Path, texts: list[str], labels: list[int], max_length: int | None, latency_texts: int, throughput_texts: int = 512
) -> tuple[ModelProfile, np.ndarray]:
    """Profile of one model on the test texts, and its predicted class ids; max_length None: the saved one."""
    model, tokenizer = load_trained(model_dir)
    model.to("cpu")
    max_length = saved_max_length(tokenizer) if max_length is None else max_length
    preds = predict_proba(model, tokenizer, texts, max_length=max_length).ids
    speed = measure_speed(model, tokenizer, texts, max_length, latency_texts, REPORT_BATCH_SIZE, throughput_texts)
    return ModelProfile.measured(
        classification_metrics(labels, preds), count_parameters(model), weights_size_mb(Path(model_dir)), speed
    ), preds


def compare_teacher_student(
    teacher_dir: Path, student_dir: Path, data_dir: Path, split: str = "test", latency_texts: int = 100, onnx: bool = False
) -> DistillReport:
    """Both models on the same split, one after the other in this process (CPU timings), each truncating
    to the length saved with it (as served). With `onnx`, the student is also exported to
    `student_dir/model.onnx`, checked and timed.
    """
    dataset = load_from_disk(str(data_dir))[split]
    texts, labels = list(dataset["text"]), list(dataset["label"])
    teacher, t_preds = profile(teacher_dir, texts, labels, None, latency_texts)
    student, s_preds = profile(student_dir, texts, labels, None, latency_texts)
    onnx_profile = None
    if onnx:
        onnx_profile = export_and_profile(Path(student_dir), texts, None, latency_texts, batch_size=REPORT_BATCH_SIZE)
    return DistillReport(teacher, student, float((t_preds == s_preds).mean()), len(texts), onnx_profile)
