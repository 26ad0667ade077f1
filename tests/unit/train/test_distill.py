"""Distillation on tiny real models and real rows: student building, learning, cross-tokenizer, cache, launcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from textclf import stages
from textclf.errors import ConfigError
from textclf.modeling import load_trained
from textclf.train.distill import prepare_distillation, run_distillation, uniform_layer_map
from textclf.train.losses import DistillWeights, distillation_loss
from textclf.train.student import build_layer_student, count_parameters, layers_to_keep
from textclf.train.teacher_cache import TeacherLogitsCache, compute_logits

LABELS = ["negative", "positive"]  # the label names of the real rows in `rows_csv`


def make_teacher(dest: Path, layers: int = 4) -> Path:
    """A 4-layer, 32-wide BERT classifier on MiniLM's tokenizer (random weights: its logits are the targets)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from textclf.settings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, num_labels=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, id2label=dict(enumerate(LABELS)),
                        label2id={v: i for i, v in enumerate(LABELS)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.classifier.weight.data.normal_(0.0, 3.0)  # confident, varied logits: soft targets worth matching
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def make_own_tokenizer_model(dest: Path, texts: list[str]) -> Path:
    """A 1-layer, 24-wide BERT with its own word-level tokenizer, built offline from the rows."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials, min_frequency=2))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_input_names=["input_ids", "attention_mask"])
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=24, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=48, max_position_embeddings=256)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest)
    fast.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture()
def splits(tiny_config, tmp_path) -> stages.DataRef:
    raw = stages.ingest(tiny_config, tmp_path / "data")
    return stages.split(tiny_config, raw, tmp_path / "data")


def with_distill(cfg, **distill):
    return cfg.model_copy(update={"distill": cfg.distill.model_copy(update=distill)})


def test_layers_to_keep_and_layer_maps():
    assert layers_to_keep(3, 6) == [0, 2, 4]
    assert layers_to_keep(2, 6) == [0, 3]
    assert layers_to_keep([4, 0], 6) == [0, 4]
    with pytest.raises(ConfigError, match="do not exist"):
        layers_to_keep([0, 6], 6)
    with pytest.raises(ConfigError, match="only 6 layers"):
        layers_to_keep(7, 6)
    assert uniform_layer_map(3, 6) == [1, 3, 5]
    assert uniform_layer_map(1, 4) == [3]


def test_two_layer_student_from_tiny_teacher_lowers_its_loss(teacher_dir, tmp_path, rows_csv):
    import pandas as pd

    student_dir, keep = build_layer_student(str(teacher_dir), [0, 2], LABELS, tmp_path / "student")
    assert keep == [0, 2]
    teacher, tokenizer = load_trained(teacher_dir)
    student, _ = load_trained(student_dir)
    assert student.config.num_hidden_layers == 2
    assert count_parameters(student) < count_parameters(teacher)
    # The kept layers are the teacher's own weights.
    assert torch.equal(student.bert.encoder.layer[1].attention.self.query.weight,
                       teacher.bert.encoder.layer[2].attention.self.query.weight)
    rows = pd.read_csv(rows_csv).head(32)
    texts = rows["text"].tolist()
    teacher_logits = torch.from_numpy(compute_logits(teacher, tokenizer, texts, 16, 64))
    labels = teacher_logits.argmax(-1)  # gold labels the teacher agrees with: no tug of war between terms
    batch = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    # A fresh head: the student starts far from the teacher's outputs and must learn them.
    student.classifier.weight.data.normal_(0.0, 0.02)
    weights = DistillWeights(temperature=2.0, alpha=0.5)
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    student.train()
    losses = []
    for _ in range(10):
        parts = distillation_loss(student(**batch).logits, teacher_logits, labels, weights)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        losses.append(parts["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_teacher_logits_cache_hits_on_rerun_and_misses_on_new_data(teacher_dir, tmp_path):
    cache = TeacherLogitsCache(tmp_path / "cache")
    texts = ["a fine film", "dull and long", "great acting"]
    first = cache.get_or_compute(teacher_dir, texts, 32, 2)
    again = cache.get_or_compute(teacher_dir, texts, 32, 2)
    assert (first.hit, again.hit) == (False, True)
    assert again.path == first.path
    logits = np.load(first.path)
    assert logits.shape == (3, 2)
    model, tokenizer = load_trained(teacher_dir)
    with torch.inference_mode():
        direct = model(**tokenizer(texts[:1], return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(logits[:1], direct, atol=1e-5)
    assert not cache.get_or_compute(teacher_dir, texts + ["new"], 32, 2).hit
    assert not cache.get_or_compute(teacher_dir, texts, 16, 2).hit  # other tokenizer settings


def test_layer_student_trains_in_process_with_hidden_mse_and_cache_hit_on_rerun(tiny_config, splits, teacher_dir,
                                                                               tmp_path):
    cfg = with_distill(tiny_config, teacher=str(teacher_dir), student_layers=2, hidden_mse=1.0, epochs=1,
                       learning_rate=1e-3, batch_size=16)
    cache = tmp_path / "logits"
    plan = prepare_distillation(cfg, splits.path, tmp_path / "d1", None, cache)
    assert not plan.logits_cache_hit and plan.layer_map == [0, 2] and plan.student_kind == "layers"
    result = run_distillation(cfg, Path(splits.path), tmp_path / "d1", tmp_path / "tok")
    student, _ = load_trained(result.model_dir)
    assert student.config.num_hidden_layers == 2
    assert result.global_step > 0 and "val_accuracy" in result.val_metrics
    assert not hasattr(student, "distill_projections")
    # A re-run in a fresh run folder reuses the teacher logits; re-running the same folder resumes.
    assert prepare_distillation(cfg, splits.path, tmp_path / "d2", None, cache).logits_cache_hit
    again = run_distillation(cfg, Path(splits.path), tmp_path / "d1", tmp_path / "tok")
    assert again.resumed_from_step == result.global_step


def test_cross_tokenizer_student_learns_from_teacher_logits(tiny_config, splits, teacher_dir, tmp_path, rows_csv):
    import pandas as pd

    own = make_own_tokenizer_model(tmp_path / "own", pd.read_csv(rows_csv)["text"].tolist())
    cfg = with_distill(tiny_config, teacher=str(teacher_dir), student_model=str(own), epochs=1,
                       learning_rate=1e-3, batch_size=16)
    plan = prepare_distillation(cfg, splits.path, tmp_path / "d", None, tmp_path / "logits")
    assert plan.student_kind == "pretrained" and plan.layer_map == [3]
    result = run_distillation(cfg, Path(splits.path), tmp_path / "d", tmp_path / "tok")
    student, tokenizer = load_trained(result.model_dir)
    _, teacher_tokenizer = load_trained(teacher_dir)
    assert tokenizer.get_vocab() != teacher_tokenizer.get_vocab()
    assert student.config.hidden_size == 24 and result.global_step > 0
    # Hidden-state matching needs one tokenizer for both: refused with a clear message.
    bad = with_distill(cfg, hidden_mse=1.0)
    prepare_distillation(bad, splits.path, tmp_path / "bad", None, tmp_path / "logits")
    with pytest.raises(ConfigError, match="hidden_mse"):
        run_distillation(bad, Path(splits.path), tmp_path / "bad", tmp_path / "tok")


def test_teacher_must_exist_and_match_labels(tiny_config, splits, tmp_path):
    with pytest.raises(ConfigError, match="trained no model"):
        prepare_distillation(tiny_config, splits.path, tmp_path / "d", None, tmp_path / "logits")
    with pytest.raises(ConfigError, match="not a trained model folder"):
        prepare_distillation(with_distill(tiny_config, teacher=str(tmp_path)), splits.path, tmp_path / "d", None,
                             tmp_path / "logits")


@pytest.mark.slow  # torchrun start-up dominates
def test_distill_stage_runs_under_torchrun_and_reports(tiny_config, splits, teacher_dir, tmp_path):
    cfg = with_distill(tiny_config, student_layers=[1, 3], epochs=1, learning_rate=1e-3, batch_size=16,
                       report_latency_texts=10)
    outcome = stages.distill(cfg, splits, tmp_path / "distill", teacher_dir=str(teacher_dir))
    assert outcome.plan["layer_map"] == [1, 3]
    assert json.loads((tmp_path / "distill" / "result.json").read_text())["global_step"] > 0
    report = stages.distill_report(cfg, outcome.plan["teacher_dir"], outcome.model_dir, splits, tmp_path)
    assert report.student.params < report.teacher.params
    assert report.student.size_mb < report.teacher.size_mb
    assert 0.0 <= report.agreement <= 1.0 and report.n_test == splits.rows["test"]
    assert report.student.latency_p95_ms >= report.student.latency_p50_ms > 0
    assert {r["measure"] for r in report.rows()} >= {"accuracy", "macro_f1", "throughput_b32", "agreement"}
    assert (tmp_path / "distill_report.json").is_file()
    # distill.onnx_export (on by default): model.onnx beside the student's weights, checked against torch.
    assert report.onnx.path == str(Path(outcome.model_dir) / "model.onnx")
    assert report.onnx.parity_max_abs_diff <= 1e-3 and report.onnx.throughput_b32 > 0
