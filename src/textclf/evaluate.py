"""Held-out evaluation: quality, per-class metrics, calibration, latency, and the plots an auditor reads."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from textclf.config import EvalConfig
from textclf.gate import compare_labels
from textclf.modeling import PREDICT_BATCH_SIZE, Predictions, load_trained, predict_proba, saved_max_length
from textclf.timing import measure_speed

# Metrics a promotion gate compares; all computed on the same split by the same code.
QUALITY_KEYS = ("accuracy", "macro_f1")
REPORT_FILE = "eval.json"


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy and macro-F1 (every class counts the same, whatever its size)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def detailed_metrics(y_true, y_pred, labels: list[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Overall metrics (accuracy, macro and weighted P/R/F1) and per-class P/R/F1/support."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    overall = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
        overall.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    per_class = {
        labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i in ids
    }
    return overall, per_class


def calibration_bins(probs: np.ndarray, y_true, n_bins: int = 15) -> tuple[float, list[dict]]:
    """Expected calibration error over equal-width confidence bins, and the bins themselves.

    probs: [n, n_classes]; confidence = max prob; ECE = sum_b |acc_b - conf_b| * n_b / n.
    """
    y_true = np.asarray(y_true)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin b holds (edges[b], edges[b+1]]; confidence 0 (impossible after softmax) would go to bin 0.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else 0.0
        acc = float(correct[mask].mean()) if count else 0.0
        ece += abs(acc - conf) * count / max(len(y_true), 1)
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count, "confidence": conf, "accuracy": acc})
    return float(ece), bins


def confident_mistakes(texts: list[str], y_true, probs: np.ndarray, labels: list[str], k: int) -> list[dict]:
    """The `k` wrong predictions the model was surest of: where it is confidently wrong."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [
        {
            "text": texts[i][:300],
            "true": labels[int(y_true[i])],
            "predicted": labels[int(pred[i])],
            "confidence": float(probs[i, pred[i]]),
        }
        for i in order
    ]


@dataclass
class EvalReport:
    split: str
    n: int
    metrics: dict[str, float]
    seconds: float
    labels: list[str] = field(default_factory=list)  # the data's classes, in id order
    model_labels: list[str] = field(default_factory=list)  # the model's own order (its predictions were mapped by name)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    calibration: list[dict] = field(default_factory=list)
    mistakes: list[dict] = field(default_factory=list)

    def prefixed(self) -> dict[str, float]:
        return {f"{self.split}_{k}": v for k, v in self.metrics.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> EvalReport:
        return cls(**raw)

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def write_artifacts(self, folder: Path) -> Path:
        """eval.json, confusion_matrix.png, reliability_diagram.png, confident_mistakes.md, summary.md."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.write(folder / REPORT_FILE)
        plot_confusion_matrix(np.asarray(self.confusion), self.labels, folder / "confusion_matrix.png")
        plot_reliability(self.calibration, self.metrics.get("ece", 0.0), folder / "reliability_diagram.png")
        (folder / "confident_mistakes.md").write_text(self.mistakes_markdown())
        (folder / "summary.md").write_text(self.markdown())
        return folder

    def mistakes_markdown(self) -> str:
        rows = ["| confidence | true | predicted | text |", "|---|---|---|---|"]
        rows += [
            f"| {m['confidence']:.3f} | {m['true']} | {m['predicted']} | {m['text'].replace('|', '/').replace(chr(10), ' ')} |"
            for m in self.mistakes
        ]
        return "## Most confident mistakes\n\n" + "\n".join(rows) + "\n"

    def markdown(self, run_link: str | None = None) -> str:
        head = f"## Evaluation on `{self.split}` ({self.n} texts)"
        if run_link:
            head += f"\n\nMLflow run: {run_link}"
        overall = "\n".join(f"| {k} | {v:.4f} |" for k, v in self.metrics.items())
        classes = "\n".join(
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
            for name, m in self.per_class.items()
        )
        return (
            f"{head}\n\n| metric | value |\n|---|---|\n{overall}\n\n"
            f"| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n{classes}\n\n" + self.mistakes_markdown()
        )


def evaluate_predictions(
    texts: list[str], y_true, probs: np.ndarray, labels: list[str], split: str = "test", n_bins: int = 15, top_k: int = 20
) -> EvalReport:
    """Everything but speed, from class probabilities (pure: no model, no I/O)."""
    y_pred = probs.argmax(axis=1)
    overall, per_class = detailed_metrics(y_true, y_pred, labels)
    ece, bins = calibration_bins(probs, y_true, n_bins)
    matrix = confusion_matrix(np.asarray(y_true), y_pred, labels=list(range(len(labels))))
    return EvalReport(
        split=split,
        n=len(texts),
        metrics={**overall, "ece": ece},
        seconds=0.0,
        labels=labels,
        per_class=per_class,
        confusion=matrix.tolist(),
        calibration=bins,
        mistakes=confident_mistakes(texts, y_true, probs, labels, top_k),
    )


@dataclass
class SplitPredictions:
    texts: list[str]
    y_true: list[int]
    labels: list[str]  # the data's class names in id order
    preds: Predictions  # columns in the data's id order, mapped by name from the model's
    seconds: float  # prediction wall time
    model_labels: list[str] = field(default_factory=list)  # the model's class names in its own id order


def predict_split(
    model,
    tokenizer,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_length: int | None = None,
    progress=None,
) -> SplitPredictions:
    """Predict `split` of the saved splits as evaluation scores it; max_length None: the model's saved one.

    Classes are matched by name (the model's id2label vs the split's ClassLabel names), never by id: a model whose
    classes are the data's in another order has its probabilities re-ordered; another set raises LabelSetChanged.
    """
    dataset = load_from_disk(str(data_dir))[split]
    model_labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    feature = dataset.features["label"]
    labels = list(feature.names) if hasattr(feature, "names") else model_labels
    order = compare_labels(model_labels, labels).column_order()  # before predicting: fail fast
    texts = list(dataset["text"])
    started = time.perf_counter()
    preds = predict_proba(model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress)
    seconds = time.perf_counter() - started
    if order != list(range(len(order))):
        preds = Predictions(probs=preds.probs[:, order], labels=labels)
    return SplitPredictions(texts, list(dataset["label"]), labels, preds, seconds, model_labels)


def evaluate_classifier(
    model,
    tokenizer,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_length: int | None = None,
    settings=None,
    progress=None,
) -> EvalReport:
    """Predict `split` of the saved splits with an in-memory model and score it, speed included.

    max_length None: the length saved with the model (what the served pyfunc truncates to).
    `settings` is an EvalConfig (latency samples, bins, top-k); None uses its defaults.
    """
    settings = settings or EvalConfig()
    max_length = saved_max_length(tokenizer) if max_length is None else max_length
    out = predict_split(model, tokenizer, data_dir, split, batch_size, max_length, progress)
    report = evaluate_predictions(
        out.texts, out.y_true, out.preds.probs, out.labels, split, settings.calibration_bins, settings.mistakes_top_k
    )
    report.seconds = out.seconds
    report.model_labels = out.model_labels
    report.metrics["texts_per_s"] = len(out.texts) / out.seconds if out.seconds > 0 else 0.0
    speed = measure_speed(
        model,
        tokenizer,
        out.texts,
        max_length,
        settings.latency_samples,
        settings.throughput_batch_size,
        settings.throughput_texts,
    )
    report.metrics.update(speed.metrics())
    return report


def evaluate_model(
    model_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = PREDICT_BATCH_SIZE,
    max_length: int | None = None,
    progress=None,
    settings=None,
) -> EvalReport:
    """Predict `split` of the saved splits with the model in `model_dir` and score it."""
    model, tokenizer = load_trained(model_dir)
    return evaluate_classifier(model, tokenizer, data_dir, split, batch_size, max_length, settings, progress)


def _figure(width: float, height: float):
    # Agg canvas on a bare Figure: no pyplot global state, no display needed, thread-safe enough for tasks.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # local: matplotlib is slow to import, plots are rare
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    size = 2.5 + 0.6 * len(labels)
    fig = _figure(size, size)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_reliability(bins: list[dict], ece: float, path: Path) -> Path:
    fig = _figure(4.5, 4.5)
    ax = fig.subplots()
    filled = [b for b in bins if b["count"]]
    centers = [(b["lower"] + b["upper"]) / 2 for b in filled]
    width = (bins[0]["upper"] - bins[0]["lower"]) if bins else 0.1
    ax.bar(centers, [b["accuracy"] for b in filled], width=width * 0.9, edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.scatter(
        [b["confidence"] for b in filled], [b["accuracy"] for b in filled], color="red", s=12, label="mean confidence", zorder=3
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
