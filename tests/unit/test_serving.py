"""The registered pyfunc predicts what evaluation scored: the saved model carries train.max_length; it is
logged as code (models-from-code), never as a pickle, and pickled weights are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict, load_from_disk

from textclf.config import EvalConfig, build_config
from textclf.errors import ModelNotFound
from textclf.evaluate import evaluate_model, predict_split
from textclf.modeling import load_trained, predict_proba, saved_max_length
from textclf.serving import MODEL_CODE, classifier_folder, save_pyfunc
from textclf.train.finetune import run_training


@pytest.fixture(scope="module")
def trained_256(tmp_path_factory, tiny_model, splits_dir):
    """The tiny model trained by the real runner with train.max_length=256."""
    cfg = build_config(
        {
            "train": {
                "kind": "finetune",
                "model": str(tiny_model),
                "epochs": 3,
                "batch_size": 16,
                "learning_rate": 1e-2,
                "max_length": 256,
                "checkpoint_steps": 100,
                "select_best": False,
            }
        }
    ).train
    tmp = tmp_path_factory.mktemp("serve-256")
    result = run_training(cfg, Path(splits_dir), tmp / "run", tmp / "cache")
    return cfg, Path(result.model_dir)


@pytest.fixture(scope="module")
def long_split(tmp_path_factory, splits_dir, trained_256):
    """A test split of 12 texts of 129..256 tokens: real reviews, one shared opening of over 128 tokens
    and a different review after it, so a 128-token truncation sees the same text 12 times."""
    _, model_dir = trained_256
    _, tokenizer = load_trained(model_dir)
    source = load_from_disk(str(splits_dir))
    pool = iter(source["train"]["text"])
    n_tokens = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731
    opening = next(pool)
    while n_tokens(opening) <= 140:
        opening = f"{opening} {next(pool)}"
    texts = [text for text in (f"{opening} {next(pool)}" for _ in range(40)) if n_tokens(text) <= 256][:12]
    assert len(texts) == 12
    dest = tmp_path_factory.mktemp("long-split")
    labels = [i % 2 for i in range(len(texts))]
    DatasetDict({"test": Dataset.from_dict({"text": texts, "label": labels}, features=source["test"].features)}).save_to_disk(
        str(dest)
    )
    return dest, texts


def test_pyfunc_predicts_what_evaluation_scored_on_long_texts(tmp_path, trained_256, long_split):
    cfg, model_dir = trained_256
    data_dir, texts = long_split
    model, tokenizer = load_trained(model_dir)
    assert saved_max_length(tokenizer) == cfg.max_length == 256

    pyfunc = mlflow.pyfunc.load_model(str(save_pyfunc(model_dir, tmp_path / "pyfunc")))
    served = pyfunc.predict(pd.DataFrame({"text": texts}))
    # What the gate scores: stages.evaluate passes train.max_length and train.eval_batch_size.
    gate = predict_split(model, tokenizer, data_dir, "test", cfg.eval_batch_size, cfg.max_length).preds
    assert served["label"].tolist() == gate.names
    np.testing.assert_allclose(served["score"].to_numpy(), gate.scores, rtol=0, atol=1e-7)

    # Evaluation without a max_length reads the saved one too, and its accuracy is the pyfunc's.
    report = evaluate_model(model_dir, data_dir, "test", settings=EvalConfig(latency_samples=2, throughput_texts=4))
    truth = [gate.labels[y] for y in load_from_disk(str(data_dir))["test"]["label"]]
    assert report.metrics["accuracy"] == pytest.approx(np.mean(np.asarray(served["label"]) == np.asarray(truth)))

    # The texts differ only after token 128: truncated there (the old serving default), they are one text.
    truncated = predict_proba(model, tokenizer, texts, max_length=128)
    assert len(set(truncated.scores.tolist())) == 1
    assert len(set(served["score"].tolist())) > 1


def test_the_saved_model_is_code_and_safetensors_without_a_pickle(tmp_path, tiny_classifier):
    saved = save_pyfunc(Path(tiny_classifier), tmp_path / "pyfunc")
    files = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt", ".pth"))], files
    folder = f"artifacts/{Path(tiny_classifier).name}"
    assert {"MLmodel", f"{folder}/model.safetensors", f"{folder}/tokenizer.json", f"{folder}/config.json"} <= files
    # the model's code is this package's fixed file, run by MLflow's code-model loader
    assert (saved / MODEL_CODE.name).read_text() == MODEL_CODE.read_text()
    flavor = yaml.safe_load((saved / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
    assert classifier_folder(saved, "saved") == saved / folder


def test_pickled_weights_are_refused_in_one_line(tmp_path, tiny_classifier):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_classifier, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    for call in (lambda: classifier_folder(tmp_path, "models:/textclf/7"), lambda: save_pyfunc(pickled, tmp_path / "out")):
        with pytest.raises(ModelNotFound) as err:
            call()
        assert "pytorch_model.bin" in str(err.value) and "\n" not in str(err.value)
    with_both = tmp_path / "both"
    shutil.copytree(tiny_classifier, with_both)
    (with_both / "extra.pkl").write_bytes(b"")
    with pytest.raises(ModelNotFound, match="extra.pkl"):
        save_pyfunc(with_both, tmp_path / "out2")
