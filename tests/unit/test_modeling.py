"""Model references resolve to something loadable; predictions keep the input order."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.config import PACKAGED_MODEL
from textclf.errors import ModelNotFound
from textclf.modeling import load_classifier, predict_proba, resolve_model, saved_max_length


def test_packaged_model_resolves_to_a_real_folder():
    path = resolve_model(PACKAGED_MODEL)
    assert path.endswith("model")
    import pathlib

    assert (pathlib.Path(path) / "model.safetensors").is_file()


@pytest.mark.parametrize("ref", ["/no/such/model", "./models/missing", "~/nope", "packaged:bert-huge"])
def test_missing_model_paths_give_one_line(ref):
    with pytest.raises(ModelNotFound) as err:
        resolve_model(ref)
    assert "train.model" in str(err.value) and "\n" not in str(err.value)


def test_hub_id_is_refused_offline_with_a_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE"):
        resolve_model("bert-base-uncased")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        resolve_model(str(tmp_path))


def test_classifier_head_carries_the_label_map(tiny_model):
    model, tokenizer = load_classifier(str(tiny_model), ["negative", "neutral", "positive"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    texts = ["short", "a much longer review of a film that goes on and on", "mid length text"]
    preds = predict_proba(model, tokenizer, texts, batch_size=2)
    assert preds.probs.shape == (3, 3)
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, rtol=1e-5)
    # Length-sorted batching must not reorder the outputs: compare with one-by-one predictions.
    one_by_one = np.vstack([predict_proba(model, tokenizer, [t]).probs for t in texts])
    np.testing.assert_allclose(preds.probs, one_by_one, atol=1e-5)


def test_predictions_truncate_to_the_length_saved_with_the_tokenizer(tiny_model):
    model, tokenizer = load_classifier(str(tiny_model), ["negative", "positive"])
    texts = ["a review that goes on and on about a film " * 4, "short"]
    tokenizer.model_max_length = 8  # what the training runner records as train.max_length
    assert saved_max_length(tokenizer) == 8
    saved = predict_proba(model, tokenizer, texts).probs
    np.testing.assert_array_equal(saved, predict_proba(model, tokenizer, texts, max_length=8).probs)
    assert not np.array_equal(saved[0], predict_proba(model, tokenizer, texts, max_length=32).probs[0])


def test_a_tokenizer_without_a_saved_length_is_one_clear_line(tiny_model):
    from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

    model, tokenizer = load_classifier(str(tiny_model), ["negative", "positive"])
    tokenizer.model_max_length = VERY_LARGE_INTEGER  # transformers' "not set"
    with pytest.raises(ModelNotFound, match="model_max_length.*pass max_length") as err:
        predict_proba(model, tokenizer, ["a review"])
    assert "\n" not in str(err.value)
