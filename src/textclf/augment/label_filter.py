"""The classifier behind the optional label-consistency filter: the champion or a given folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textclf.config import LabelFilterConfig, RegistryTarget
from textclf.modeling import Predictions, predict_proba
from textclf.registry import champion_uri, current_champion, load_registered

# Probabilities with the classifier's own class names: the filter matches a row's label to a column by name.
Predict = Callable[[list[str]], Predictions]


def label_filter_for(settings: LabelFilterConfig, reg: RegistryTarget, download_to: Path) -> tuple[Predict | None, str | None]:
    """(predict_proba or None, a note on why the filter is off) for `augment.label_filter`."""
    if not settings.enabled:
        return None, None
    if settings.model == "champion":
        if current_champion(reg) is None:
            return None, "label filter skipped: no champion in the registry yet"
        uri = champion_uri(reg)
    else:
        uri = settings.model
    # safetensors weights of the Hugging Face folder in it; a model that cannot load so is refused (ModelNotFound)
    model, tokenizer, _ = load_registered(reg.mlflow, uri, download_to)

    def predict(texts: list[str]) -> Predictions:
        # the model's own max_length (saved with it at training), as when it serves
        return predict_proba(model, tokenizer, texts, batch_size=settings.batch_size)

    return predict, None
