"""The label-consistency filter matches a row's label to the classifier's classes by name, never by id."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from textclf.augment.filters import label_consistent
from textclf.augment.label_filter import label_filter_for
from textclf.augment.training_split import SYNONYM, augment_train_split
from textclf.config import AugmentConfig, LabelFilterConfig, build_config
from textclf.data.sources import read_packaged_corpus

TWO = ["negative", "positive"]
THREE = ["mixed", "negative", "positive"]  # 'mixed' sorts first: the classifier's ids are not the data's


def filter_from(folder, tmp_path, min_confidence: float = 0.5):
    reg = build_config({"output_dir": str(tmp_path / "outputs")}).registry_target()
    settings = LabelFilterConfig(enabled=True, model=str(folder), min_confidence=min_confidence)
    predict, note = label_filter_for(settings, reg, tmp_path / "label_filter_model")
    assert predict is not None and note is None
    return predict


def test_rows_are_checked_by_class_name_and_unknown_classes_pass_unchecked(tiny_classifier, tmp_path, reordered_classifier):
    texts = ["a tender, funny film", "dull and far too long", "neither here nor there", "great acting, weak plot"]
    names = ["positive", "negative", "mixed", "negative"]
    predict = filter_from(tiny_classifier, tmp_path)
    preds = predict(texts)
    assert preds.labels == TWO
    expected = [bool(preds.probs[k, TWO.index(n)] >= 0.5) if n in TWO else True for k, n in enumerate(names)]
    keep, unchecked = label_consistent(texts, names, predict, 0.5)
    assert keep.tolist() == expected and unchecked == {"mixed": 1}

    # The same classifier with its classes in the other order keeps the same rows.
    shuffled = filter_from(reordered_classifier(tiny_classifier, tmp_path / "reordered", ["positive", "negative"]), tmp_path)
    assert shuffled(texts).labels == ["positive", "negative"]
    again, _ = label_consistent(texts, names, shuffled, 0.5)
    assert again.tolist() == expected
    assert label_consistent([], [], predict, 0.5)[0].shape == (0,)


@pytest.fixture()
def three_class_splits() -> DatasetDict:
    """Real reviews in three classes; the third, 'mixed', is one the 2-class classifier does not have."""
    frame = read_packaged_corpus()
    rows = {name: frame[frame["label"] == name]["text"].tolist()[:12] for name in TWO}
    rows["mixed"] = frame["text"].tolist()[-12:]
    features = Features({"text": Value("string"), "label": ClassLabel(names=THREE)})

    def split(lo: int, hi: int) -> Dataset:
        texts = [t for name in THREE for t in rows[name][lo:hi]]
        labels = [i for i, name in enumerate(THREE) for _ in rows[name][lo:hi]]
        return Dataset.from_dict({"text": texts, "label": labels}, features=features)

    return DatasetDict({"train": split(0, 10), "validation": split(10, 11), "test": split(11, 12)})


def test_augmentation_filters_by_name_when_the_classifier_lacks_a_class(tiny_classifier, tmp_path, three_class_splits):
    cfg = AugmentConfig.model_validate(
        {
            "enabled": True,
            "multiplier": 2.0,
            "backtranslate": {"enabled": False},
            "label_filter": {"enabled": True, "min_confidence": 0.5},
        }
    )
    predict = filter_from(tiny_classifier, tmp_path, cfg.label_filter.min_confidence)
    notes: list[str] = []
    out, report = augment_train_split(three_class_splits, cfg, predict_proba=predict, log=notes.append)

    added = out["train"].select(range(len(three_class_splits["train"]), len(out["train"])))
    names = [THREE[i] for i in added["label"]]
    mixed = names.count("mixed")
    assert mixed == report.added[SYNONYM]["mixed"] > 0  # no class to check them against: kept
    note = f"label filter: the classifier has no class ['mixed']; {mixed} augmented rows of it kept unchecked"
    assert note in report.notes and f"[augment] {note}" in notes
    # Every kept row of a known class has its own class's probability, looked up by name, above the bar.
    checked = [(t, n) for t, n in zip(added["text"], names, strict=True) if n != "mixed"]
    preds = predict([t for t, _ in checked])
    own = np.array([preds.probs[k, preds.labels.index(n)] for k, (_, n) in enumerate(checked)])
    assert checked and (own >= cfg.label_filter.min_confidence).all()
    assert report.dropped[SYNONYM]["label_consistency"] > 0  # and the filter did drop rows of known classes
