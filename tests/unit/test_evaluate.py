"""textclf.evaluate: metrics against sklearn/hand references, plots, and a real tiny model end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import classification_report

from textclf.config import EvalConfig
from textclf.evaluate import (
    EvalReport,
    calibration_bins,
    confident_mistakes,
    detailed_metrics,
    evaluate_model,
    evaluate_predictions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_detailed_metrics_match_sklearn_report():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 0, 1, 2, 2, 2, 0, 2]
    labels = ["a", "b", "c"]
    overall, per_class = detailed_metrics(y_true, y_pred, labels)
    ref = classification_report(y_true, y_pred, target_names=labels, output_dict=True, zero_division=0)
    assert overall["accuracy"] == pytest.approx(ref["accuracy"])
    for ours, theirs in (("macro", "macro avg"), ("weighted", "weighted avg")):
        assert overall[f"{ours}_precision"] == pytest.approx(ref[theirs]["precision"])
        assert overall[f"{ours}_recall"] == pytest.approx(ref[theirs]["recall"])
        assert overall[f"{ours}_f1"] == pytest.approx(ref[theirs]["f1-score"])
    for name in labels:
        assert per_class[name]["f1"] == pytest.approx(ref[name]["f1-score"])
        assert per_class[name]["support"] == ref[name]["support"]


def _ece_reference(probs, y_true, n_bins):
    """Plain loop version of the textbook definition."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(len(conf)) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if members:
            acc = np.mean([pred[i] == y_true[i] for i in members])
            total += abs(acc - np.mean(conf[members])) * len(members) / len(conf)
    return total


def test_ece_matches_reference_and_is_zero_when_calibrated():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y_true = rng.integers(0, 3, size=200)
    ece, bins = calibration_bins(probs, y_true, n_bins=10)
    assert ece == pytest.approx(_ece_reference(probs, y_true, 10), abs=1e-9)
    assert sum(b["count"] for b in bins) == 200
    # Confidence 1.0 and always right: perfectly calibrated.
    sure = np.eye(3)[[0, 1, 2, 0]]
    assert calibration_bins(sure, [0, 1, 2, 0], 10)[0] == pytest.approx(0.0)


def test_confident_mistakes_are_wrong_and_sorted():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01]])
    y_true = [1, 1, 1, 0, 0]
    found = confident_mistakes([f"t{i}" for i in range(5)], y_true, probs, ["neg", "pos"], k=5)
    assert [m["text"] for m in found] == ["t0", "t3", "t2"]
    assert found[0] == {"text": "t0", "true": "pos", "predicted": "neg", "confidence": pytest.approx(0.9)}


def test_report_writes_plots_and_tables(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1], size=40)
    y_true = rng.integers(0, 2, size=40)
    report = evaluate_predictions([f"text {i}" for i in range(40)], y_true, probs, ["negative", "positive"], top_k=3)
    folder = report.write_artifacts(tmp_path / "evaluation")
    for png in ("confusion_matrix.png", "reliability_diagram.png"):
        data = (folder / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    assert sum(map(sum, report.confusion)) == 40
    assert len(report.mistakes) == 3
    assert "| negative |" in (folder / "summary.md").read_text()
    again = EvalReport.read(folder / "eval.json")
    assert again.metrics == report.metrics and again.per_class == report.per_class
    assert json.loads((folder / "eval.json").read_text())["labels"] == ["negative", "positive"]


def test_evaluate_model_on_tiny_real_model(tiny_classifier, splits_dir):
    settings = EvalConfig(latency_samples=5, throughput_texts=40, mistakes_top_k=4)
    report = evaluate_model(tiny_classifier, splits_dir, "test", batch_size=8, max_length=32, settings=settings)
    for key in (
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "macro_precision",
        "weighted_recall",
        "ece",
        "latency_p50_ms",
        "latency_p95_ms",
        "throughput_texts_per_s",
    ):
        assert key in report.metrics
    assert 0 < report.metrics["latency_p50_ms"] <= report.metrics["latency_p95_ms"]
    assert report.metrics["throughput_texts_per_s"] > 0
    assert report.labels == ["negative", "positive"]
    assert sum(m["support"] for m in report.per_class.values()) == report.n
    assert len(report.mistakes) <= 4
