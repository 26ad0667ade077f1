"""The classifier behind the optional label-consistency filter: the champion or a given folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from textclf.config import LabelFilterConfig, RegistryTarget
from textclf.modeling import load_trained, predict_proba
from textclf.registry import champion_uri, current_champion, download_model


def _classifier_folder(root: Path) -> Path | None:
    """The fine-tuned model folder inside a downloaded MLflow model (or the folder itself)."""
    for config in sorted(Path(root).rglob("config.json")):
        if any(config.parent.glob("tokenizer*")):
            return config.parent
    return None


Predict = Callable[[list[str]], np.ndarray]


def label_filter_for(settings: LabelFilterConfig, reg: RegistryTarget, download_to: Path) -> tuple[Predict | None, str | None]:
    """(predict_proba or None, a note on why the filter is off) for `augment.label_filter`."""
    if not settings.enabled:
        return None, None
    if settings.model == "champion":
        if current_champion(reg) is None:
            return None, "label filter skipped: no champion in the registry yet"
        root = download_model(reg.mlflow, champion_uri(reg), download_to)
    else:
        root = Path(settings.model)
    folder = _classifier_folder(root)
    if folder is None:
        return None, f"label filter skipped: no classifier folder under {root}"
    model, tokenizer = load_trained(folder)

    def predict(texts: list[str]) -> np.ndarray:
        # the model's own max_length (saved with it at training), as when it serves
        return predict_proba(model, tokenizer, texts, batch_size=settings.batch_size).probs

    return predict, None
