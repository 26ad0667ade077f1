"""ONNX export of the student: parity with torch on real texts, dynamic shapes, figures in the report."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from textclf.errors import ConfigError
from textclf.modeling import load_classifier, load_trained
from textclf.train.distill_report import compare_teacher_student
from textclf.train.onnx_export import (
    ONNX_FILE,
    PARITY_TOLERANCE,
    OnnxClassifier,
    max_abs_logit_diff,
    require_onnx_packages,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_classifier, splits_dir):
    # A copy: the export writes model.onnx into the folder, and tiny_classifier is shared.
    student = shutil.copytree(tiny_classifier, tmp_path_factory.mktemp("onnx") / "student")
    out = compare_teacher_student(tiny_classifier, student, splits_dir, "test", latency_texts=10, onnx=True)
    return out, student


@pytest.fixture(scope="module")
def real_texts(rows_csv) -> list[str]:
    return pd.read_csv(rows_csv)["text"].astype(str).tolist()


def test_export_lands_beside_the_weights_and_matches_torch(report, real_texts):
    rep, student = report
    assert rep.onnx is not None and rep.onnx.path == str(student / ONNX_FILE)
    assert 0.0 <= rep.onnx.parity_max_abs_diff <= PARITY_TOLERANCE
    assert rep.onnx.parity_texts == rep.n_test  # fewer test texts than the parity sample: all of them
    model, tokenizer = load_trained(student)  # torch loading ignores model.onnx (serving keeps working)
    onnx_model = OnnxClassifier(student / ONNX_FILE)
    assert max_abs_logit_diff(model, onnx_model, tokenizer, real_texts, max_length=64) <= PARITY_TOLERANCE


def test_batch_and_sequence_axes_are_dynamic(report, real_texts):
    _, student = report
    model, tokenizer = load_trained(student)
    onnx_model = OnnxClassifier(student / ONNX_FILE)
    assert [tuple(i.shape) for i in onnx_model.session.get_inputs()] == [("batch", "sequence")] * 3
    longest = " ".join(real_texts[:10])  # longer than any sequence seen at export or in the parity check
    for texts in ([real_texts[0]], [*real_texts[1:6], longest]):
        enc = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        got = onnx_model(**enc).logits
        with torch.no_grad():
            expected = model(**enc).logits.numpy()
        assert got.shape == (len(texts), 2)
        np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE, rtol=0)
    assert enc["input_ids"].shape[1] > 64


def test_parity_check_detects_a_different_model(report, real_texts):
    _, student = report
    torch.manual_seed(1)  # the same architecture with another classification head
    other, tokenizer = load_classifier(str(student), ["negative", "positive"])
    other.classifier.reset_parameters()
    diff = max_abs_logit_diff(other, OnnxClassifier(student / ONNX_FILE), tokenizer, real_texts[:32], 64)
    assert diff > PARITY_TOLERANCE


def test_report_carries_the_onnx_figures(report, tmp_path):
    rep, _ = report
    metrics = rep.metrics()
    for key in (
        "student_onnx_latency_p50_ms",
        "student_onnx_latency_p95_ms",
        "student_onnx_throughput_b32",
        "student_onnx_size_mb",
        "student_onnx_parity_max_abs_diff",
    ):
        assert key in metrics, key
    assert metrics["student_onnx_latency_p95_ms"] >= metrics["student_onnx_latency_p50_ms"] > 0
    assert metrics["student_onnx_throughput_b32"] > 0 and metrics["student_onnx_size_mb"] > 0
    rows = rep.rows()
    assert all("student (onnx)" in row for row in rows)  # one table shape for the Prefect artifact
    by_measure = {row["measure"]: row for row in rows}
    assert by_measure["throughput_b32"]["student (onnx)"] and not by_measure["accuracy"]["student (onnx)"]
    assert "onnx max |logit diff| vs torch" in by_measure
    written = json.loads(rep.write(tmp_path / "report.json").read_text())
    assert written["onnx"]["parity_max_abs_diff"] == rep.onnx.parity_max_abs_diff


def test_missing_onnxruntime_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without the package sees
    with pytest.raises(ConfigError, match=r"onnxruntime is not installed.*onnx_export=false") as err:
        require_onnx_packages()
    assert "\n" not in str(err.value)
