"""Mean-pooling heads: chosen for sentence-transformers checkpoints, padding-invariant, saved loud."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from textclf.errors import ConfigError
from textclf.modeling import checkpoint_pooling, load_classifier, load_trained
from textclf.pooling import masked_mean

LABELS = ["negative", "positive"]


def as_sentence_transformer(src, dest, mode="mean"):
    """A copy of a model folder with the metadata sentence-transformers writes beside it."""
    shutil.copytree(src, dest)
    (dest / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": mode == "cls",
                "pooling_mode_mean_tokens": mode == "mean",
                "pooling_mode_max_tokens": False,
            }
        )
    )
    return dest


def test_masked_mean_matches_a_loop_over_real_tokens():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(3)])
    assert torch.allclose(masked_mean(hidden, mask), expected, atol=1e-6)


def test_sentence_transformers_checkpoint_gets_the_mean_head(tiny_model, tmp_path):
    st = as_sentence_transformer(tiny_model, tmp_path / "st")
    assert checkpoint_pooling(str(st)) == "mean" and checkpoint_pooling(str(tiny_model)) is None
    model, _ = load_classifier(str(st), LABELS)
    assert type(model).__name__ == "MeanPoolingBertForSequenceClassification"
    plain, _ = load_classifier(str(tiny_model), LABELS)  # not a sentence-transformers checkpoint
    assert type(plain).__name__ == "BertForSequenceClassification"
    forced, _ = load_classifier(str(st), LABELS, pooling="model")
    assert type(forced).__name__ == "BertForSequenceClassification"
    cls_st = as_sentence_transformer(tiny_model, tmp_path / "cls", mode="cls")
    assert type(load_classifier(str(cls_st), LABELS)[0]).__name__ == "BertForSequenceClassification"


def test_mean_head_ignores_padding_and_survives_save_and_load(tiny_model, tmp_path):
    model, tokenizer = load_classifier(str(tiny_model), LABELS, pooling="mean")
    model.eval()
    texts = ["a fine film", "a long, slow and utterly tedious film that never finds its footing"]
    with torch.no_grad():
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        batched = model(**batch).logits
        out = model(**batch, output_hidden_states=True, labels=torch.tensor([1, 0]))
    assert torch.allclose(alone[0], batched[0], atol=1e-5)  # padding does not move the mean
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1 and out.loss.item() > 0
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "textclf-mean-bert"  # a stock loader refuses it instead of using [CLS]
    again, _ = load_trained(tmp_path / "saved")
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, batched, atol=1e-6)
    # A fine-tuned mean model re-loaded as a classifier (e.g. a distillation teacher) keeps its head.
    assert type(load_classifier(str(tmp_path / "saved"), LABELS)[0]) is type(model)


def test_mean_pooling_on_an_unsupported_architecture_names_the_fix(tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from textclf.settings import packaged_model_path

    DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    ).save_pretrained(tmp_path / "d")
    AutoTokenizer.from_pretrained(packaged_model_path()).save_pretrained(tmp_path / "d")
    with pytest.raises(ConfigError, match="train.pooling=model"):
        load_classifier(str(tmp_path / "d"), LABELS, pooling="mean")
