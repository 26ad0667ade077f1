"""The frozen-encoder probe on a tiny real BERT and real rows: the saved classifier is the fitted head, C is chosen
on validation, a new drop encodes only its new texts, and distillation reads the teacher's logits from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict, Value, load_from_disk

from textclf import stages
from textclf.config import build_config
from textclf.errors import ConfigError
from textclf.modeling import load_trained
from textclf.train.distill import ResolvedTeacher, prepare_distillation
from textclf.train.probe import PROBE_FILE, ProbeFit, train_probe
from textclf.train.teacher_cache import compute_logits


def probe_config(tmp_path: Path, model: Path, **probe):
    return build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "train": {
                "kind": "probe",
                "model": str(model),
                "max_length": 64,
                "probe": {"backend": "torch", "cache_dir": str(tmp_path / "vectors"), **probe},
            },
        }
    )


def torch_logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    model, tokenizer = load_trained(model_dir)
    return compute_logits(model, tokenizer, texts, batch_size=16, max_length=64)


def three_classes(splits_dir: str, dest: Path) -> str:
    """The real splits with a third class: each text's label by its length (short / medium / long)."""
    splits = load_from_disk(splits_dir)
    cuts = np.quantile([len(t) for t in splits["train"]["text"]], [1 / 3, 2 / 3])

    def relabel(row):
        return {"label": int(np.searchsorted(cuts, len(row["text"])))}

    out = DatasetDict(
        {
            k: v.cast_column("label", Value("int64"))
            .map(relabel)
            .cast_column("label", ClassLabel(names=["short", "mid", "long"]))
            for k, v in splits.items()
        }
    )
    out.save_to_disk(str(dest))
    return str(dest)


@pytest.mark.parametrize("classes", [2, 3])
def test_saved_classifier_is_the_fitted_head_and_c_is_chosen_on_validation(tmp_path, tiny_model, splits_dir, classes):
    data = splits_dir if classes == 2 else three_classes(splits_dir, tmp_path / "three")
    cfg = probe_config(tmp_path, tiny_model, c_grid=[0.01, 0.1, 1.0])
    result = train_probe(cfg.train, Path(data), tmp_path / "run", cfg.vector_cache_path(), log_line=lambda line: None)

    model_dir = Path(result.model_dir)
    fit = ProbeFit.read(model_dir)
    assert fit is not None and fit.c in (0.01, 0.1, 1.0) and set(fit.val_by_c) == {"0.01", "0.1", "1.0"}
    # The chosen C has the lowest validation log-loss of the grid (probe.select_metric's default).
    assert fit.val_by_c[str(fit.c)]["loss"] == min(s["loss"] for s in fit.val_by_c.values())
    assert result.val_metrics["val_loss"] == pytest.approx(fit.val_by_c[str(fit.c)]["loss"])
    assert fit.max_logit_diff < 1e-3
    # A plain Hugging Face classifier folder: its own forward gives the head's predictions on validation.
    splits = load_from_disk(data)
    texts = list(splits["validation"]["text"])
    logits = torch_logits(model_dir, texts)
    assert logits.shape == (len(texts), classes)
    accuracy = float((logits.argmax(1) == np.asarray(splits["validation"]["label"])).mean())
    assert accuracy == pytest.approx(result.val_metrics["val_accuracy"])
    model, tokenizer = load_trained(model_dir)
    assert model.config.normalize_pooled is True and tokenizer.model_max_length == 64
    assert [model.config.id2label[i] for i in range(classes)] == splits["train"].features["label"].names


def test_a_new_drop_encodes_only_its_new_texts(tmp_path, tiny_model, splits_dir):
    cfg = probe_config(tmp_path, tiny_model)
    splits = load_from_disk(splits_dir)
    first = DatasetDict(train=splits["train"].select(range(100)), validation=splits["validation"])
    first.save_to_disk(str(tmp_path / "first"))
    train_probe(cfg.train, tmp_path / "first", tmp_path / "r1", cfg.vector_cache_path(), log_line=lambda line: None)
    fit1 = ProbeFit.read(tmp_path / "r1" / "model")
    assert fit1 is not None and (fit1.encoded_texts, fit1.cached_texts) == (100 + len(splits["validation"]), 0)

    # The next drop: the same rows plus the rest of the train split (e.g. augmented or newly labelled rows).
    DatasetDict(train=splits["train"], validation=splits["validation"]).save_to_disk(str(tmp_path / "second"))
    train_probe(cfg.train, tmp_path / "second", tmp_path / "r2", cfg.vector_cache_path(), log_line=lambda line: None)
    fit2 = ProbeFit.read(tmp_path / "r2" / "model")
    new = len(set(splits["train"]["text"][100:]) - set(splits["train"]["text"][:100]))
    assert fit2 is not None and fit2.encoded_texts == new
    assert fit2.cached_texts == len(set(splits["train"]["text"][:100])) + len(set(splits["validation"]["text"]))


def test_distillation_reads_the_probe_teachers_logits_from_the_vector_cache(tmp_path, tiny_model, splits_dir):
    cfg = probe_config(tmp_path, tiny_model)
    teacher = train_probe(cfg.train, Path(splits_dir), tmp_path / "t", cfg.vector_cache_path(), log_line=lambda line: None)
    distill = cfg.distill.model_copy(update={"student_model": str(tiny_model)})

    def plan_in(name: str):
        resolved = ResolvedTeacher(Path(teacher.model_dir), "probe", None)
        return prepare_distillation(
            cfg.train, distill, splits_dir, tmp_path / name, resolved, tmp_path / f"{name}-logits", cfg.vector_cache_path()
        )

    plan = plan_in("d")
    meta = json.loads((tmp_path / "d-logits" / f"{plan.logits_key}.json").read_text())
    assert meta["computed_by"] == "the teacher's head on its cached encoder vectors"
    texts = list(load_from_disk(splits_dir)["train"]["text"])
    np.testing.assert_allclose(np.load(plan.teacher_logits), torch_logits(Path(teacher.model_dir), texts), atol=1e-4)

    # Without the probe record the same teacher runs itself, and gives the same logits.
    (Path(teacher.model_dir) / PROBE_FILE).unlink()
    again = plan_in("d2")
    meta = json.loads((tmp_path / "d2-logits" / f"{again.logits_key}.json").read_text())
    assert meta["computed_by"] == "the teacher"
    np.testing.assert_allclose(np.load(again.teacher_logits), np.load(plan.teacher_logits), atol=1e-4)


def test_the_training_stage_launches_the_probe_and_writes_the_fine_tunes_folders(tmp_path, tiny_model, splits_dir):
    cfg = probe_config(tmp_path, tiny_model)
    result = stages.train(cfg, stages.DataRef.of_splits(splits_dir), tmp_path / "run", log_line=lambda line: None)
    assert Path(result.model_dir, PROBE_FILE).is_file() and result.world_size == 1
    for folder in ("model", "checkpoints", "best"):  # dvc.yaml's outs of the train stage
        assert (tmp_path / "run" / folder).is_dir()
    assert json.loads((tmp_path / "run" / "result.json").read_text())["val_metrics"] == result.val_metrics
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {line["probe_c"] for line in lines if "probe_c" in line} == set(cfg.train.probe.c_grid)


def test_a_model_without_a_mean_pooling_head_is_refused_in_one_line(tmp_path, splits_dir):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from textclf.settings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    DistilBertModel(
        DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    ).save_pretrained(tmp_path / "distil")
    tokenizer.save_pretrained(tmp_path / "distil")
    cfg = probe_config(tmp_path, tmp_path / "distil")
    with pytest.raises(ConfigError) as err:
        train_probe(cfg.train, Path(splits_dir), tmp_path / "run", cfg.vector_cache_path(), log_line=lambda line: None)
    assert "train.kind=finetune" in str(err.value) and "distilbert" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "model").exists()


def test_probe_settings_are_checked_when_the_config_is_built():
    with pytest.raises(ConfigError, match="train.kind=probe fits its head on mean-pooled vectors"):
        build_config({"train": {"kind": "probe", "pooling": "model"}})
    with pytest.raises(ConfigError, match="c_grid"):
        build_config({"train": {"probe": {"c_grid": [0.1, 0]}}})
    assert build_config({"train": {"probe": {"c_grid": [1, 0.1, 1]}}}).train.probe.c_grid == [0.1, 1]


@pytest.mark.slow
def test_the_default_teacher_on_real_rows(tmp_path, splits_dir, monkeypatch):
    """The demo's teacher as configured by default: packaged MPNet exported to ONNX (fp32) into an empty cache,
    a head fitted on 160 real reviews; it must already classify the held-out ones far above chance."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a first run: the export happens here
    cfg = build_config({"output_dir": str(tmp_path / "outputs")})
    assert (cfg.train.kind, cfg.train.probe.backend, cfg.train.probe.quantize) == ("probe", "onnx", False)
    result = train_probe(cfg.train, Path(splits_dir), tmp_path / "run", cfg.vector_cache_path(), log_line=lambda line: None)
    assert list((tmp_path / "xdg" / "textclf" / "encoders" / "onnx").glob("*/encoder.onnx"))
    fit = ProbeFit.read(Path(result.model_dir))
    assert fit is not None and fit.backend == "onnx" and fit.max_logit_diff < 1e-3  # ONNX fp32 vectors = torch's
    splits = load_from_disk(splits_dir)
    held_out = [*splits["validation"], *splits["test"]]  # 40 rows; chance is 0.5 (the result is deterministic)
    logits = torch_logits(Path(result.model_dir), [row["text"] for row in held_out])
    accuracy = float((logits.argmax(1) == np.asarray([row["label"] for row in held_out])).mean())
    assert accuracy >= 0.7, accuracy
