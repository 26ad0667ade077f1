"""textclf.timing: the percentile estimator on known inputs, warm-up left out, one speed type for every report."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from textclf.config import EvalConfig
from textclf.evaluate import evaluate_model
from textclf.settings import packaged_model_path
from textclf.timing import (
    WARMUP_CALLS,
    Speed,
    latency_ms,
    measure_speed,
    percentiles_ms,
    throughput,
)
from textclf.train.distill_report import ModelProfile, profile

SRC = Path(__file__).resolve().parents[2] / "src" / "textclf"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(packaged_model_path())


class FakeClock:
    """Seconds that pass only when the scripted model says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedModel:
    """A callable model whose n-th call takes `durations[n]` seconds on `clock`; it records input shapes."""

    def __init__(self, clock: FakeClock, durations: list[float]):
        self.clock, self.durations, self.shapes = clock, durations, []

    def __call__(self, **inputs):
        self.clock.now += self.durations[len(self.shapes)]
        self.shapes.append(tuple(inputs["input_ids"].shape))


def test_percentiles_are_linear_interpolation_between_order_statistics():
    assert percentiles_ms([50, 10, 40, 20, 30]) == (30.0, pytest.approx(48.0))  # rank 0.95 * 4 = 3.8: 40 + 0.8 * 10
    times = [float(t) for t in range(1, 21)]
    p50, p95 = percentiles_ms(times)
    assert (p50, p95) == (10.5, pytest.approx(19.05))
    # The same estimator as statistics' "inclusive" quantiles (Hyndman & Fan type 7).
    assert p95 == pytest.approx(statistics.quantiles(times, n=20, method="inclusive")[18])
    assert p50 == statistics.median(times)


def test_latency_leaves_the_warm_up_out(tokenizer):
    clock = FakeClock()
    # Warm-up calls take 1 s each; the timed calls take 1, 2, ..., 20 ms.
    model = ScriptedModel(clock, [1.0] * WARMUP_CALLS + [k / 1000 for k in range(1, 21)])
    texts = ["a short review", "a review that goes on " * 20]
    got = latency_ms(model, tokenizer, texts, max_length=16, samples=20, clock=clock)
    assert got == (pytest.approx(10.5), pytest.approx(19.05))
    assert len(model.shapes) == WARMUP_CALLS + 20
    assert all(batch == 1 and length <= 16 for batch, length in model.shapes)  # batch 1, truncated


def test_throughput_is_the_median_pass_after_the_warm_up(tokenizer):
    clock = FakeClock()
    # 64 texts at batch 32: warm-up batches take 100 s; the three passes take 2 s, 1 s and 4 s.
    model = ScriptedModel(clock, [100.0] * WARMUP_CALLS + [1.0, 1.0, 0.5, 0.5, 2.0, 2.0])
    rate = throughput(model, tokenizer, ["one review", "another review"], 16, batch_size=32, repeats=3, n_texts=64, clock=clock)
    assert rate == pytest.approx(32.0)  # median of 64/2, 64/1, 64/4 texts per second
    assert [batch for batch, _ in model.shapes] == [32] * (WARMUP_CALLS + 6)


def test_speed_carries_what_it_measured(tokenizer):
    clock = FakeClock()
    model = ScriptedModel(clock, [0.001] * 100)
    speed = measure_speed(
        model, tokenizer, ["a review"], 16, latency_samples=5, batch_size=4, throughput_texts=8, repeats=2, clock=clock
    )
    assert speed == Speed(pytest.approx(1.0), pytest.approx(1.0), pytest.approx(4000.0), 4, 5, 8, 2)


def test_evaluation_and_distillation_report_take_their_speed_fields_from_timing():
    speed = Speed(
        latency_p50_ms=1.5,
        latency_p95_ms=4.0,
        throughput_texts_per_s=250.0,
        batch_size=32,
        latency_samples=50,
        throughput_texts=256,
        repeats=3,
    )
    # The gate reads these evaluation metric names; bench/distill.py and MLflow read the report's.
    assert speed.metrics() == {"latency_p50_ms": 1.5, "latency_p95_ms": 4.0, "throughput_texts_per_s": 250.0}
    prof = ModelProfile.measured({"accuracy": 0.8, "macro_f1": 0.7}, 10, 1.0, speed)
    assert (prof.latency_p50_ms, prof.latency_p95_ms, prof.throughput_b32) == (1.5, 4.0, 250.0)


def test_no_other_module_computes_latency_percentiles():
    """One estimator: every p50/p95 in src comes from textclf.timing."""
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "timing.py" and any(name in p.read_text() for name in ("percentile(", "quantiles("))
    ]
    assert offenders == []


def test_one_tiny_model_through_evaluation_and_the_distillation_report(tiny_classifier, splits_dir):
    settings = EvalConfig(latency_samples=5, throughput_texts=16, mistakes_top_k=2)
    metrics = evaluate_model(tiny_classifier, splits_dir, "test", 8, 32, settings=settings).metrics
    from datasets import load_from_disk

    test = load_from_disk(str(splits_dir))["test"]
    prof, _ = profile(Path(tiny_classifier), list(test["text"]), list(test["label"]), 32, 5, throughput_texts=16)
    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
    assert 0 < prof.latency_p50_ms <= prof.latency_p95_ms
    assert metrics["throughput_texts_per_s"] > 0 and prof.throughput_b32 > 0


def test_only_cpu_models_are_timed(tokenizer):
    model = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(ValueError, match="CPU"):
        latency_ms(model, tokenizer, ["a review"], 16, samples=1)
