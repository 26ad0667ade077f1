"""CPU speed of a classifier, measured one way everywhere: batch-1 latency (p50/p95) and batched throughput.

Any callable model fits: a torch sequence classifier or the onnxruntime wrapper (keyword token
tensors in). Tokenisation is inside every timed call, as it is for a served request.

- Warm-up: the first `WARMUP_CALLS` calls of each measurement (batch-1 calls for latency, full
  batches for throughput) are run and not timed: they pay for allocation, kernel selection and
  thread-pool start-up, which no later request pays.
- Percentiles: linear interpolation between order statistics (Hyndman & Fan type 7; numpy's default
  `method="linear"`, `statistics.quantiles(method="inclusive")`, R's and pandas' default).
- Throughput: texts per second over the texts in arrival order (padding as traffic would have it),
  the median of `repeats` passes: other processes on a shared machine disturb single passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeVar

import numpy as np
import torch

from textclf.config import EvalConfig

WARMUP_CALLS = 3
PERCENTILE_METHOD: Final = "linear"  # Final: numpy takes the literal method name
THROUGHPUT_REPEATS = 3
DEFAULT_BATCH_SIZE = EvalConfig.model_fields["throughput_batch_size"].default

Clock = Callable[[], float]  # seconds, monotonic (time.perf_counter); passed in so tests can fake it


class Latency(NamedTuple):
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Speed:
    """One model's speed: what evaluation reports and the distillation report both carry."""

    latency_p50_ms: float  # batch 1, tokenisation included
    latency_p95_ms: float
    throughput_texts_per_s: float  # at `batch_size`, tokenisation included, median of `repeats` passes
    batch_size: int
    latency_samples: int
    throughput_texts: int
    repeats: int

    def metrics(self) -> dict[str, float]:
        """The evaluation metric names (the gate reads latency_p95_ms)."""
        return {
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "throughput_texts_per_s": self.throughput_texts_per_s,
        }


def percentiles_ms(times_ms: list[float]) -> Latency:
    """p50 and p95 of `times_ms` by the one estimator used for every latency figure (module docstring)."""
    p50, p95 = np.percentile(np.asarray(times_ms, dtype=float), [50, 95], method=PERCENTILE_METHOD)
    return Latency(float(p50), float(p95))


T = TypeVar("T")


def _repeat(items: Sequence[T], n: int) -> list[T]:
    """`n` items, repeating `items` (not empty) in order when it is shorter."""
    return [items[i % len(items)] for i in range(n)]


def _cycle(texts: list[str], n: int) -> list[str]:
    """`n` texts, repeating `texts` in order when it is shorter."""
    return _repeat(texts or ["empty"], n)


def _runner(model, tokenizer, max_length: int) -> Callable[[list[str]], None]:
    if isinstance(model, torch.nn.Module):
        model.eval()
        param = next(model.parameters(), None)
        if param is not None and param.device.type != "cpu":
            raise ValueError(f"timing measures CPU speed; the model is on {param.device} (move it to the CPU)")

    def run(batch: list[str]) -> None:
        model(**tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))

    return run


@torch.inference_mode()
def latency_ms(
    model, tokenizer, texts: list[str], max_length: int, samples: int | None = None, clock: Clock = time.perf_counter
) -> Latency:
    """p50 and p95 (ms) of `samples` single-text calls (default: one per text), after the warm-up."""
    run = _runner(model, tokenizer, max_length)
    stream = _cycle(texts, samples or len(texts) or 1)
    for text in _cycle(stream, WARMUP_CALLS):
        run([text])
    times = []
    for text in stream:
        start = clock()
        run([text])
        times.append((clock() - start) * 1000)
    return percentiles_ms(times)


@torch.inference_mode()
def throughput(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    repeats: int = THROUGHPUT_REPEATS,
    n_texts: int | None = None,
    clock: Clock = time.perf_counter,
) -> float:
    """Texts per second through `n_texts` texts (default: all, in order) in batches of `batch_size`;
    the median of `repeats` passes, after the warm-up batches."""
    run = _runner(model, tokenizer, max_length)
    stream = _cycle(texts, n_texts or len(texts) or 1)
    batches = [stream[i : i + batch_size] for i in range(0, len(stream), batch_size)]
    for batch in _repeat(batches, WARMUP_CALLS):  # never empty: the stream has >= 1 text
        run(batch)
    rates = []
    for _ in range(max(repeats, 1)):
        start = clock()
        for batch in batches:
            run(batch)
        elapsed = clock() - start
        rates.append(len(stream) / elapsed if elapsed > 0 else 0.0)
    return float(np.median(rates))


def measure_speed(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    latency_samples: int,
    batch_size: int,
    throughput_texts: int,
    repeats: int = THROUGHPUT_REPEATS,
    clock: Clock = time.perf_counter,
) -> Speed:
    """Latency at batch 1 over `latency_samples` texts and throughput over `throughput_texts` texts
    at `batch_size` (texts repeated in order when there are fewer)."""
    latency = latency_ms(model, tokenizer, texts, max_length, latency_samples, clock)
    rate = throughput(model, tokenizer, texts, max_length, batch_size, repeats, throughput_texts, clock)
    return Speed(latency.p50_ms, latency.p95_ms, rate, batch_size, latency_samples, throughput_texts, repeats)
