"""The classifier behind the optional label-consistency filter: the champion or a given folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from textclf.config import PipelineConfig


def _classifier_folder(root: Path) -> Path | None:
    """The fine-tuned model folder inside a downloaded MLflow model (or the folder itself)."""
    for config in sorted(Path(root).rglob("config.json")):
        if any(config.parent.glob("tokenizer*")):
            return config.parent
    return None


Predict = Callable[[list[str]], np.ndarray]


def label_filter_for(cfg: PipelineConfig, download_to: Path) -> tuple[Predict | None, str | None]:
    """(predict_proba or None, a note on why the filter is off) for `augment.label_filter`."""
    settings = cfg.augment.label_filter
    if not settings.enabled:
        return None, None
    from textclf import registry
    from textclf.modeling import load_trained, predict_proba

    if settings.model == "champion":
        if registry.current_champion(cfg) is None:
            return None, "label filter skipped: no champion in the registry yet"
        root = registry.download_model(cfg, registry.champion_uri(cfg), download_to)
    else:
        root = Path(settings.model)
    folder = _classifier_folder(root)
    if folder is None:
        return None, f"label filter skipped: no classifier folder under {root}"
    model, tokenizer = load_trained(folder)

    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, texts, batch_size=settings.batch_size,
                             max_length=cfg.train.max_length).probs

    return predict, None
