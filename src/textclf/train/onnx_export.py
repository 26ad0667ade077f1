"""ONNX export of a trained classifier, checked against the torch model and timed with onnxruntime.

`model.onnx` goes into the model folder beside the safetensors weights and the tokenizer, so the
registered model carries it; torch loading ignores it. Inputs are the tokenizer's own
(`input_ids`, `attention_mask`[, `token_type_ids`]), int64 [batch, sequence], both axes dynamic;
the output is `logits`, float32 [batch, num_labels].
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from textclf.errors import ConfigError, ExportFailed
from textclf.modeling import load_trained, saved_max_length
from textclf.timing import measure_speed

ONNX_FILE = "model.onnx"
PARITY_TOLERANCE = 1e-3  # max |logit difference| accepted between onnxruntime and torch (float32)
PARITY_TEXTS = 256
PACKAGES = "onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2"


@dataclass
class OnnxProfile:
    parity_max_abs_diff: float  # max |logit_onnx - logit_torch| over parity_texts test texts, batch 32, padded
    parity_texts: int
    latency_p50_ms: float  # batch 1, tokenisation included (textclf.timing, as for the torch profile)
    latency_p95_ms: float
    throughput_b32: float  # texts/s at batch 32 (distill_report's batch), tokenisation included
    size_mb: float  # model.onnx on disk
    export_s: float
    path: str


def require_onnx_packages(setting: str = "distill.onnx_export is on", fallback: str = "set distill.onnx_export=false") -> None:
    """One clear line when `setting` needs the ONNX packages and one is missing; `fallback` is the way around."""
    for module in ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(
                f"{setting} but the Python package {module} is not installed: "
                f"run `make setup` (pip install {PACKAGES}) or {fallback}"
            ) from None


def _input_names(encoded) -> list[str]:
    return [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded]


def export_onnx(model, tokenizer, dest: Path) -> Path:
    """`model` (a sequence classifier) -> `dest` (one self-contained .onnx file), dynamic batch and sequence."""
    require_onnx_packages()
    model.eval()
    # Two texts of different lengths: example sizes of 1 would be specialised by torch.export.
    example = tokenizer(["an example", "a somewhat longer example text"], padding=True, return_tensors="pt")
    names = _input_names(example)
    inputs = {n: example[n] for n in names}
    return export_program(model, inputs, "logits", dest, type(model).__name__, "set distill.onnx_export=false to skip it")


def export_program(module, example: dict, output: str, dest: Path, what: str, fallback: str) -> Path:
    """`module(**example)` (int64 [batch, sequence] tensors) -> one self-contained .onnx file at `dest`, both axes
    dynamic, one named output; a failure is one ExportFailed line naming `what` and the `fallback`."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed": not actionable here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, likewise
        try:
            program = torch.onnx.export(
                module,
                (),
                kwargs=example,
                input_names=list(example),
                output_names=[output],
                dynamic_shapes={n: {0: batch, 1: sequence} for n in example},
                dynamo=True,
                verbose=False,
            )
        except Exception as err:  # the exporter raises many kinds; the user needs the first line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ExportFailed(f"ONNX export of {what} failed ({first}); {fallback}") from err
        finally:
            exporter_log.setLevel(level)
    if program is None:  # the legacy (dynamo=False) exporter's return; dynamo=True always gives a program
        raise ExportFailed(f"ONNX export of {what} returned no program; {fallback}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(dest), external_data=False)
    return dest


class OnnxClassifier:
    """An onnxruntime session called like the torch classifier (keyword tensors in, `.logits` out),
    so textclf.timing measures both the same way."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort  # local: an optional package, and slow to import for runs that never export

        options = ort.SessionOptions()
        # Same thread budget as torch in this process: a fair comparison on a shared CPU.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def eval(self) -> OnnxClassifier:
        return self

    def __call__(self, **inputs) -> SimpleNamespace:
        feeds = {n: np.asarray(inputs[n], dtype=np.int64) for n in self.input_names}
        return SimpleNamespace(logits=self.session.run(["logits"], feeds)[0])


@torch.inference_mode()
def max_abs_logit_diff(
    model, onnx_model: OnnxClassifier, tokenizer, texts: list[str], max_length: int, batch_size: int = 32
) -> float:
    """Largest |logit| difference between torch and onnxruntime over `texts`, padded batches in order."""
    model.eval()
    worst = 0.0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        expected = model(**enc).logits.float().numpy()
        worst = max(worst, float(np.abs(onnx_model(**enc).logits - expected).max()))
    return worst


def export_and_profile(
    model_dir: Path,
    texts: list[str],
    max_length: int | None,
    latency_texts: int,
    throughput_texts: int = 512,
    tolerance: float = PARITY_TOLERANCE,
    *,
    batch_size: int,
) -> OnnxProfile:
    """Export `model_dir` to `model_dir/model.onnx`, check parity on `texts`, time it like the torch profile
    (max_length None: the saved one)."""
    require_onnx_packages()
    model_dir = Path(model_dir)
    model, tokenizer = load_trained(model_dir)
    model.to("cpu")
    max_length = saved_max_length(tokenizer) if max_length is None else max_length
    start = time.perf_counter()
    path = export_onnx(model, tokenizer, model_dir / ONNX_FILE)
    export_s = time.perf_counter() - start
    onnx_model = OnnxClassifier(path)
    parity_texts = texts[:PARITY_TEXTS]
    diff = max_abs_logit_diff(model, onnx_model, tokenizer, parity_texts, max_length)
    if not diff <= tolerance:  # NaN fails too
        raise ExportFailed(
            f"ONNX export {path}: max absolute logit difference {diff:.3g} against the torch model "
            f"on {len(parity_texts)} test texts exceeds {tolerance:g}; do not serve this file "
            "(set distill.onnx_export=false to skip the export)"
        )
    del model
    speed = measure_speed(onnx_model, tokenizer, texts, max_length, latency_texts, batch_size, throughput_texts)
    return OnnxProfile(
        diff,
        len(parity_texts),
        speed.latency_p50_ms,
        speed.latency_p95_ms,
        speed.throughput_texts_per_s,
        path.stat().st_size / 1e6,
        export_s,
        str(path),
    )
