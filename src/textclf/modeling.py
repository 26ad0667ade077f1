"""Load and run sequence classifiers: resolve a model reference, predict in length-sorted batches."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from textclf.config import PACKAGED_MODEL, PACKAGED_MPNET, TrainConfig
from textclf.errors import ConfigError, ModelNotFound
from textclf.pooling import PREFIX as MEAN_POOLING_PREFIX
from textclf.pooling import mean_pooling_class
from textclf.settings import hub_offline, packaged_model_path, packaged_mpnet_path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
PREDICT_BATCH_SIZE = TrainConfig.model_fields["eval_batch_size"].default
# Above this a tokenizer's model_max_length is transformers' "not set" sentinel (int(1e30)), not a length.
UNSET_MAX_LENGTH = 1_000_000


def resolve_model(reference: str) -> str:
    """'packaged:...' -> its folder; an existing folder -> itself; else a hub id (checked for form)."""
    packaged = {PACKAGED_MODEL: packaged_model_path, PACKAGED_MPNET: packaged_mpnet_path}
    if reference in packaged:
        return str(packaged[reference]())
    if reference.startswith("packaged:"):
        known = " or ".join(repr(name) for name in packaged)
        raise ModelNotFound(f"train.model {reference!r}: unknown packaged model; the packaged ones are {known}")
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"train.model: {path} has no config.json; point it at a Hugging Face model folder")
        return str(path)
    looks_like_path = reference.startswith(("/", ".", "~")) or path.suffix != "" or reference.count("/") > 1
    if looks_like_path or not HUB_ID.match(reference):
        raise ModelNotFound(
            f"train.model: {reference} does not exist; give an existing model folder, a hub id, or {PACKAGED_MODEL!r}"
        )
    if hub_offline():
        raise ModelNotFound(
            f"train.model {reference!r} is a hub id but HF_HUB_OFFLINE is set; use a local folder or {PACKAGED_MODEL!r}"
        )
    return reference


def checkpoint_pooling(location: str) -> str | None:
    """How a sentence-transformers checkpoint pools tokens ('mean', 'cls', ...); None for other models."""

    def read(name: str) -> str | None:
        path = Path(location) / name
        if path.is_file():
            return path.read_text()
        if Path(location).is_dir():
            return None
        try:  # a hub id: sentence-transformers metadata is two small files
            return Path(hf_hub_download(location, name)).read_text()
        except Exception:  # not a sentence-transformers repo, or offline
            return None

    modules = read("modules.json")
    if not modules:
        return None
    for module in json.loads(modules):
        if module.get("type", "").endswith("Pooling"):
            pooling = read(f"{module.get('path', '1_Pooling')}/config.json")
            if pooling:
                modes = json.loads(pooling)
                return next(
                    (
                        m.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                        for m, on in modes.items()
                        if m.startswith("pooling_mode_") and on
                    ),
                    None,
                )
    return None


def choose_pooling(location: str, model_type: str, requested: str) -> str:
    """'mean' or 'model' (the architecture's own head) for `requested` in auto/mean/model."""
    if model_type.startswith(MEAN_POOLING_PREFIX):
        return "model"  # already a mean-pooling classifier (fine-tuned by textclf)
    supported = mean_pooling_class(model_type) is not None
    if requested == "mean" and not supported:
        raise ConfigError(
            f"train.pooling=mean: no mean-pooling head for {model_type!r} models "
            "(bert, mpnet, roberta, xlm-roberta); use train.pooling=model"
        )
    if requested == "auto":
        return "mean" if supported and checkpoint_pooling(location) == "mean" else "model"
    return requested


def load_classifier(reference: str, labels: list[str], pooling: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model with a classification head sized and named for `labels`, plus its tokenizer.

    pooling: 'auto' = mean of the token vectors for sentence-transformers checkpoints that were
    trained that way (textclf.pooling), else the architecture's own head; 'mean' or 'model' force it.
    """
    location = resolve_model(reference)
    id2label = dict(enumerate(labels))
    kwargs = dict(
        num_labels=len(labels),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=False,
    )
    try:
        # Weights load from safetensors only (a pickle can run code) and never with the repo's own code.
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model_type = AutoConfig.from_pretrained(location, trust_remote_code=False).model_type
        if choose_pooling(location, model_type, pooling) == "mean":
            with quiet_transformers():  # "a model of type bert to instantiate textclf-mean-bert": intended
                model = mean_pooling_class(model_type).from_pretrained(location, **kwargs)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(location, **kwargs)
    except OSError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelNotFound(
            f"train.model {reference!r} could not be loaded (textclf loads safetensors weights "
            f"only; convert a pickle checkpoint with save_pretrained): {first}"
        ) from None
    return model, tokenizer


@contextmanager
def quiet_transformers():
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


@dataclass
class Predictions:
    probs: np.ndarray  # [n_texts, n_classes], softmax probabilities
    labels: list[str]  # class names in id order

    @property
    def ids(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def names(self) -> list[str]:
        return [self.labels[i] for i in self.ids]

    @property
    def scores(self) -> np.ndarray:
        return self.probs.max(axis=1)


def saved_max_length(tokenizer) -> int:
    """The truncation length saved with a trained model: its tokenizer's `model_max_length`, which the
    training runner sets to `train.max_length`, so serving and evaluation truncate like training."""
    length = getattr(tokenizer, "model_max_length", None)
    if not isinstance(length, int) or length > UNSET_MAX_LENGTH:
        raise ModelNotFound(
            f"the tokenizer saved with this model has no model_max_length ({length!r}); "
            "pass max_length, or retrain so the model folder records train.max_length"
        )
    return length


@torch.inference_mode()
def predict_proba(
    model, tokenizer, texts: list[str], batch_size: int = PREDICT_BATCH_SIZE, max_length: int | None = None, progress=None
) -> Predictions:
    """Class probabilities for `texts`; batches are formed from length-sorted texts to cut padding.

    max_length None: the length saved with the model (`saved_max_length`).
    """
    model.eval()
    max_length = saved_max_length(tokenizer) if max_length is None else max_length
    device = next(model.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    n_classes = model.config.num_labels
    probs = np.zeros((len(texts), n_classes), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(
            device
        )
        logits = model(**batch).logits.float()
        probs[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
        if progress is not None:
            progress(len(idx))
    labels = [model.config.id2label[i] for i in range(n_classes)]
    return Predictions(probs=probs, labels=labels)


def load_trained(model_dir: str | Path):
    """A fine-tuned classifier folder (safetensors + tokenizer) -> (model, tokenizer)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelNotFound(f"{model_dir} holds no trained model (config.json missing)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    return model, tokenizer
