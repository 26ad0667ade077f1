"""The frozen-encoder probe (train.kind=probe): a logistic-regression head on a frozen encoder's pooled vectors.

The encoder's mean-pooled vectors (textclf.train.encoders, cached per text: a retrain on a new drop encodes only
the new texts, augmented rows included) are L2-normalised (probe.normalize) and standardised; one multinomial
logistic regression per C in probe.c_grid is fitted on the train split and scored on validation, and the best by
probe.select_metric is kept (ties: the stronger regularisation). The standardisation is folded into the head, which
becomes the `classifier` layer of textclf.pooling's mean-pooling classifier (`normalize_pooled`), saved in Hugging
Face format in `<run>/model` like a fine-tuned model: evaluation, registry, serving and distillation load it as any
other classifier. `probe.json` beside the weights records the encoder and the fit, so distillation computes the
teacher's logits from the cached vectors (`probe_logits`) instead of a second pass through the encoder.

Runs in one process (the training launcher starts it like a fine-tune, single process, so it gets the same time
limit, failure record and metrics sink).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from safetensors.numpy import load_file
from transformers import AutoConfig
from transformers.utils import logging as hf_logging

from textclf.config import TrainConfig
from textclf.errors import ConfigError
from textclf.evaluate import classification_metrics
from textclf.modeling import load_classifier, quiet_transformers, resolve_model
from textclf.pooling import NORMALIZE_ATTR, PREFIX, mean_pooling_class
from textclf.tracking import MetricSink, NullSink
from textclf.train.encoders import FrozenEncoder, encode_cached, encoder_identity, load_encoder
from textclf.train.finetune import TrainResult, rank_process

PROBE_FILE = "probe.json"
# The folded head against the torch model on these validation texts: fp32 ONNX and torch agree to ~1e-5.
CHECK_TEXTS = 16
FP32_LOGIT_TOLERANCE = 1e-3


@dataclass
class ProbeFit:
    """What `probe.json` records: the frozen encoder the head reads, and how the head was chosen."""

    encoder: str  # resolved encoder folder
    encoder_identity: str  # sha256 of its files (the vector cache's key)
    max_length: int
    normalize: bool
    backend: str
    quantize: bool
    c: float  # the chosen inverse regularisation strength
    val_by_c: dict[str, dict[str, float]]  # str(C) -> validation accuracy / macro_f1 / loss
    select_metric: str
    train_rows: int
    encoded_texts: int  # run through the encoder by this fit
    cached_texts: int  # read from the vector cache
    encode_s: float
    fit_s: float
    max_logit_diff: float  # folded head on torch vs on the cached vectors, CHECK_TEXTS validation texts

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / PROBE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, model_dir: Path) -> ProbeFit | None:
        path = Path(model_dir) / PROBE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def prepared(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """What the head reads: float64 vectors, L2-normalised when `normalize` (as the saved model does)."""
    x = np.asarray(vectors, dtype=np.float64)
    if normalize:
        x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    return x


def _score(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss

    metrics = classification_metrics(y, probs.argmax(axis=1))
    return {**metrics, "loss": float(log_loss(y, probs, labels=list(range(probs.shape[1]))))}


def _better(metric: str, a: dict[str, float], b: dict[str, float] | None) -> bool:
    if b is None:
        return True
    return a[metric] < b[metric] if metric == "loss" else a[metric] > b[metric]


def fit_head(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, cfg: TrainConfig, n_classes: int
) -> tuple[np.ndarray, np.ndarray, float, dict[str, dict[str, float]]]:
    """(weight [C, D], bias [C], chosen C, validation scores by C) of the best head, standardisation folded in."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z_train, z_val = (x_train - mean) / std, (x_val - mean) / std
    scores: dict[str, dict[str, float]] = {}
    best, best_c, best_score = None, cfg.probe.c_grid[0], None
    for c in cfg.probe.c_grid:  # ascending: a tie keeps the stronger regularisation
        model = LogisticRegression(C=c, max_iter=cfg.probe.max_iter, random_state=cfg.seed)
        model.fit(z_train, y_train)
        probs = np.zeros((len(z_val), n_classes))
        probs[:, model.classes_] = model.predict_proba(z_val)
        scores[str(c)] = _score(probs, y_val)
        if _better(cfg.probe.select_metric, scores[str(c)], best_score):
            best, best_c, best_score = model, c, scores[str(c)]
    assert best is not None
    coef = np.zeros((n_classes, x_train.shape[1]))
    intercept = np.zeros(n_classes)
    if len(best.classes_) == 2 and best.coef_.shape[0] == 1:  # binary: one score s, softmax([0, s]) = sigmoid(s)
        coef[best.classes_[1]], intercept[best.classes_[1]] = best.coef_[0], best.intercept_[0]
    else:
        coef[best.classes_], intercept[best.classes_] = best.coef_, best.intercept_
    # w . (x - mean) / std + b  ==  (w / std) . x + (b - w . (mean / std))
    weight = coef / std
    bias = intercept - coef @ (mean / std)
    return weight, bias, best_c, scores


def head_logits(weight: np.ndarray, bias: np.ndarray, vectors: np.ndarray, normalize: bool) -> np.ndarray:
    return (prepared(vectors, normalize) @ np.asarray(weight, dtype=np.float64).T + bias).astype(np.float32)


def encoder_for(cfg: TrainConfig) -> FrozenEncoder:
    return load_encoder(
        cfg.model, pooling="mean", max_length=cfg.max_length, backend=cfg.probe.backend, quantize=cfg.probe.quantize
    )


def run_probe(cfg: TrainConfig, data_dir: Path, run_dir: Path, vector_cache: Path, sink: MetricSink | None = None) -> TrainResult:
    """The probe as the training launcher's entry (one process): its failure is recorded like a rank's."""
    with rank_process(Path(run_dir)):
        return train_probe(cfg, data_dir, run_dir, vector_cache, sink)


def train_probe(
    cfg: TrainConfig, data_dir: Path, run_dir: Path, vector_cache: Path, sink: MetricSink | None = None, log_line=print
) -> TrainResult:
    """Fit the probe on the splits in `data_dir`; the classifier goes to `run_dir/model`, the result to
    `run_dir/result.json` (the fine-tune's TrainResult: validation metrics of the chosen head)."""
    started = time.perf_counter()
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars: noise in the task log
    run_dir = Path(run_dir)
    sink = sink or NullSink()
    splits = load_from_disk(str(data_dir))
    labels = splits["train"].features["label"].names
    model_type = AutoConfig.from_pretrained(resolve_model(cfg.model), trust_remote_code=False).model_type
    if model_type.startswith(PREFIX) or mean_pooling_class(model_type) is None:
        raise ConfigError(
            f"train.kind=probe: {cfg.model!r} is a {model_type!r} model, not a base encoder with a mean-pooling "
            "head (bert, mpnet, roberta, xlm-roberta); use train.kind=finetune or another train.model"
        )
    with quiet_transformers():
        model, tokenizer = load_classifier(cfg.model, labels, "mean")
    frozen = encoder_for(cfg)
    texts = {name: list(splits[name]["text"]) for name in ("train", "validation")}
    y = {name: np.asarray(splits[name]["label"]) for name in ("train", "validation")}
    encode_start = time.perf_counter()
    encoded = {
        name: encode_cached(frozen, texts[name], cfg.probe.batch_size, vector_cache, _progress(name, log_line)) for name in texts
    }
    encode_s = time.perf_counter() - encode_start
    new = sum(e.encoded for e in encoded.values())
    cached = sum(e.cached for e in encoded.values())
    log_line(
        f"[probe] {frozen.backend} {frozen.precision} encoder: {new} text(s) encoded in {encode_s:.1f}s"
        f"{f' ({new / encode_s:.1f} texts/s)' if new else ''}, {cached} from the vector cache"
    )
    fit_start = time.perf_counter()
    x = {name: prepared(e.vectors, cfg.probe.normalize) for name, e in encoded.items()}
    weight, bias, best_c, scores = fit_head(x["train"], y["train"], x["validation"], y["validation"], cfg, len(labels))
    fit_s = time.perf_counter() - fit_start
    for step, (c, metrics) in enumerate(scores.items()):
        sink.log({"probe_c": float(c), **{f"probe_val_{k}": v for k, v in metrics.items()}}, step)
    chosen = scores[str(best_c)]
    log_line(
        f"[probe] head C={best_c} (of {len(scores)}, by validation {cfg.probe.select_metric}): "
        f"val accuracy {chosen['accuracy']:.4f}, macro-F1 {chosen['macro_f1']:.4f} in {fit_s:.1f}s"
    )
    setattr(model.config, NORMALIZE_ATTR, cfg.probe.normalize)
    head: torch.nn.Linear = model.classifier  # type: ignore[assignment]  # the mean-pooling classifier's head
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight).to(head.weight.dtype))
        head.bias.copy_(torch.from_numpy(bias).to(head.bias.dtype))
    diff = _check_fold(model, tokenizer, texts["validation"][:CHECK_TEXTS], encoded["validation"].vectors, weight, bias, cfg)
    tokenizer.model_max_length = cfg.max_length  # saved with the model: serving truncates like training
    model_dir = run_dir / "model"
    partial = run_dir / "model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    ProbeFit(
        frozen.location,
        frozen.identity,
        cfg.max_length,
        cfg.probe.normalize,
        frozen.backend,
        frozen.quantize,
        best_c,
        scores,
        cfg.probe.select_metric,
        len(texts["train"]),
        new,
        cached,
        round(encode_s, 3),
        round(fit_s, 3),
        diff,
    ).write(partial)
    val_metrics = {f"val_{k}": v for k, v in chosen.items()}
    (partial / "val_metrics.json").write_text(json.dumps(val_metrics, indent=2))
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)
    for folder in ("checkpoints", "best"):  # the fine-tune's folders (dvc.yaml outs), empty: a probe has none
        (run_dir / folder).mkdir(exist_ok=True)
    runtime = time.perf_counter() - started
    train_probs = _softmax(head_logits(weight, bias, encoded["train"].vectors, cfg.probe.normalize))
    result = TrainResult(
        model_dir=str(model_dir.resolve()),
        global_step=0,
        resumed_from_step=0,
        train_loss=_score(train_probs, y["train"])["loss"],
        train_runtime_s=runtime,
        train_samples_per_s=len(texts["train"]) / runtime,
        val_metrics=val_metrics,
        world_size=1,
    )
    sink.log(
        {
            "probe_chosen_c": float(best_c),
            **val_metrics,
            "probe_encoded_texts": float(new),
            "probe_cached_texts": float(cached),
            "probe_encode_s": encode_s,
        },
        len(scores),
    )
    sink.close()
    result.write(run_dir)
    return result


def _progress(split: str, log_line, every_s: float = 30.0):
    """A progress(done, total) that logs a line at most every `every_s` seconds, and at the end."""
    started = time.perf_counter()
    last = started

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            last = now
            rate = done / max(now - started, 1e-9)
            log_line(f"[probe] {split}: {done}/{total} new texts encoded ({rate:.1f} texts/s)")

    return report


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_fold(model, tokenizer, texts: list[str], vectors: np.ndarray, weight, bias, cfg: TrainConfig) -> float:
    """Max |logit| difference between the saved model (torch) and the head on the encoder's vectors; with fp32
    vectors above FP32_LOGIT_TOLERANCE the fold is wrong and the probe fails rather than register it."""
    if not texts:
        return 0.0
    model.eval()
    with torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=cfg.max_length, padding=True, return_tensors="pt")
        torch_logits = model(**batch).logits.float().numpy()
    expected = head_logits(weight, bias, vectors[: len(texts)], cfg.probe.normalize)
    diff = float(np.abs(torch_logits - expected).max())
    if not cfg.probe.quantize and diff > FP32_LOGIT_TOLERANCE:
        raise RuntimeError(
            f"probe: the saved classifier's logits differ from the head's by {diff:.2e} (> {FP32_LOGIT_TOLERANCE}); "
            "the head was not folded into the model correctly"
        )
    return diff


def probe_logits(teacher_dir: Path, texts: list[str], batch_size: int, vector_cache: Path | None) -> np.ndarray | None:
    """The logits of a probe teacher: its head on its encoder's (cached) vectors; None when `teacher_dir` is no
    probe or its encoder is not on this machine as it was (then the teacher itself runs)."""
    fit = ProbeFit.read(teacher_dir)
    weights_file = Path(teacher_dir) / "model.safetensors"
    if fit is None or not weights_file.is_file() or not Path(fit.encoder).is_dir():
        return None
    if encoder_identity(Path(fit.encoder)) != fit.encoder_identity:
        return None
    frozen = load_encoder(fit.encoder, pooling="mean", max_length=fit.max_length, backend=fit.backend, quantize=fit.quantize)  # type: ignore[arg-type]
    vectors = encode_cached(frozen, texts, batch_size, vector_cache).vectors
    weights = load_file(str(weights_file))
    return head_logits(weights["classifier.weight"], weights["classifier.bias"], vectors, fit.normalize)
