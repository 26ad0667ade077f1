"""Distillation on tiny real models and real rows: student building, learning, cross-tokenizer, cache,
the fine-tuning run loop's early stopping, best weights and resume, launcher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from textclf import stages
from textclf.errors import ConfigError
from textclf.modeling import load_trained
from textclf.train.distill import (
    ResolvedTeacher,
    prepare_distillation,
    resolve_teacher,
    run_distillation,
    uniform_layer_map,
)
from textclf.train.losses import DistillWeights, distillation_loss
from textclf.train.student import build_layer_student, count_parameters, layers_to_keep
from textclf.train.teacher_cache import TeacherLogitsCache, compute_logits

LABELS = ["negative", "positive"]  # the label names of the real rows in `rows_csv`


def make_teacher(dest: Path, layers: int = 4, hidden: int = 32) -> Path:
    """A 4-layer, 32-wide BERT classifier on MiniLM's tokenizer (random weights: its logits are the targets)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from textclf.settings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        id2label=dict(enumerate(LABELS)),
        label2id={v: i for i, v in enumerate(LABELS)},
    )
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
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"],
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=256,
    )
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


def with_distill(cfg, train: dict | None = None, **distill):
    return cfg.model_copy(
        update={"distill": cfg.distill.model_copy(update=distill), "train": cfg.train.model_copy(update=train or {})}
    )


def no_registry(uri: str, dest: Path) -> tuple[Path, str]:
    raise AssertionError(f"this test names no registered teacher, yet {uri} was fetched")


def plan(cfg, splits, run_dir: Path, cache: Path, trained_dir: str | None = None):
    teacher = resolve_teacher(cfg.distill.teacher, trained_dir, run_dir / "teacher", no_registry)
    return prepare_distillation(cfg.train, cfg.distill, splits.path, run_dir, teacher, cache)


def distil(cfg, splits, run_dir: Path, tok_cache: Path):
    return run_distillation(cfg.train, cfg.distill, Path(splits.path), run_dir, tok_cache)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


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
    assert torch.equal(
        student.bert.encoder.layer[1].attention.self.query.weight, teacher.bert.encoder.layer[2].attention.self.query.weight
    )
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


def test_layer_student_trains_in_process_with_hidden_mse_and_cache_hit_on_rerun(tiny_config, splits, teacher_dir, tmp_path):
    cfg = with_distill(
        tiny_config, teacher=str(teacher_dir), student_layers=2, hidden_mse=1.0, epochs=1, learning_rate=1e-3, batch_size=16
    )
    cache = tmp_path / "logits"
    first = plan(cfg, splits, tmp_path / "d1", cache)
    assert not first.logits_cache_hit and first.layer_map == [0, 2] and first.student_kind == "layers"
    result = distil(cfg, splits, tmp_path / "d1", tmp_path / "tok")
    student, _ = load_trained(result.model_dir)
    assert student.config.num_hidden_layers == 2
    assert result.global_step > 0 and "val_accuracy" in result.val_metrics
    assert not hasattr(student, "distill_projections")
    # A re-run in a fresh run folder reuses the teacher logits; re-running the same folder resumes.
    assert plan(cfg, splits, tmp_path / "d2", cache).logits_cache_hit
    again = distil(cfg, splits, tmp_path / "d1", tmp_path / "tok")
    assert again.resumed_from_step == result.global_step


def test_cross_tokenizer_student_learns_from_teacher_logits(tiny_config, splits, teacher_dir, tmp_path, rows_csv):
    import pandas as pd

    own = make_own_tokenizer_model(tmp_path / "own", pd.read_csv(rows_csv)["text"].tolist())
    cfg = with_distill(tiny_config, teacher=str(teacher_dir), student_model=str(own), epochs=1, learning_rate=1e-3, batch_size=16)
    made = plan(cfg, splits, tmp_path / "d", tmp_path / "logits")
    assert made.student_kind == "pretrained" and made.layer_map == [3]
    result = distil(cfg, splits, tmp_path / "d", tmp_path / "tok")
    student, tokenizer = load_trained(result.model_dir)
    _, teacher_tokenizer = load_trained(teacher_dir)
    assert tokenizer.get_vocab() != teacher_tokenizer.get_vocab()
    assert student.config.hidden_size == 24 and result.global_step > 0
    # Hidden-state matching needs one tokenizer for both: refused with a clear message.
    bad = with_distill(cfg, hidden_mse=1.0)
    plan(bad, splits, tmp_path / "bad", tmp_path / "logits")
    with pytest.raises(ConfigError, match="hidden_mse"):
        distil(bad, splits, tmp_path / "bad", tmp_path / "tok")


def test_teacher_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="trained no model"):
        resolve_teacher("", None, tmp_path / "t", no_registry)
    with pytest.raises(ConfigError, match="not a trained model folder"):
        resolve_teacher(str(tmp_path), None, tmp_path / "t", no_registry)
    assert resolve_teacher("", str(tmp_path), tmp_path / "t", no_registry) == ResolvedTeacher(tmp_path, "this run's model", None)


def test_registered_teacher_is_the_hf_folder_inside_what_the_registry_fetched(teacher_dir, tmp_path):
    def fetch(uri: str, dest: Path) -> tuple[Path, str]:
        shutil.copytree(teacher_dir, dest / "artifacts" / "model")  # an MLflow model keeps the HF folder inside
        (dest / "MLmodel").write_text("flavors: {}\n")
        return dest, "textclf/3"

    got = resolve_teacher("models:/textclf@champion", "/ignored/when/a/teacher/is/named", tmp_path / "t", fetch)
    assert got == ResolvedTeacher(tmp_path / "t" / "artifacts" / "model", "models:/textclf@champion", "textclf/3")
    with pytest.raises(ConfigError, match="no Hugging Face model folder"):
        resolve_teacher("models:/textclf/1", None, tmp_path / "empty", lambda uri, dest: (dest, "textclf/1"))


# The run loop is fine-tuning's: early stopping, best weights and resume come with it.
# 160 train rows, batch 16: 10 steps an epoch.


def test_distillation_stops_early_and_saves_the_tokenizer_with_max_length(tiny_config, splits, teacher_dir, tmp_path):
    """A learning rate of ~0 leaves accuracy flat: no evaluation beats the first, so patience 1 stops
    at the second evaluation (step 4 of 30) and the first evaluation's step is the best."""
    cfg = with_distill(
        tiny_config,
        {"eval_steps": 2, "early_stopping_patience": 1, "checkpoint_steps": 100},
        teacher=str(teacher_dir),
        student_layers=2,
        epochs=3,
        learning_rate=1e-12,
        batch_size=16,
    )
    plan(cfg, splits, tmp_path / "d", tmp_path / "logits")
    result = distil(cfg, splits, tmp_path / "d", tmp_path / "tok")
    assert (result.global_step, result.best_step) == (4, 2)
    assert result.tokenize_cache_hits == {"train": False, "validation": False} and result.eval_runtime_s > 0
    assert set(result.val_metrics) == {"val_loss", "val_accuracy", "val_macro_f1"}
    saved = json.loads((tmp_path / "d" / "result.json").read_text())
    assert (saved["global_step"], saved["best_step"]) == (4, 2)
    _, tokenizer = load_trained(result.model_dir)
    assert tokenizer.model_max_length == cfg.train.max_length == 64  # serving truncates like training


def test_distillation_keeps_the_best_weights_without_the_projections(tiny_config, splits, tiny_model, tmp_path):
    """A 32-wide pretrained student matching a 48-wide teacher's hidden states (learned projections)
    at a learning rate high enough to overshoot: the final model is the lowest-val-loss evaluation's
    weights, not the last ones, and the projections are in the checkpoints only."""
    teacher = make_teacher(tmp_path / "wide-teacher", hidden=48)
    cfg = with_distill(
        tiny_config,
        {"eval_steps": 2, "checkpoint_steps": 10, "best_metric": "loss", "select_best": True},
        teacher=str(teacher),
        student_model=str(tiny_model),
        hidden_mse=1.0,
        epochs=1,
        learning_rate=0.05,
        batch_size=16,
    )
    plan(cfg, splits, tmp_path / "d", tmp_path / "logits")
    result = distil(cfg, splits, tmp_path / "d", tmp_path / "tok")
    state = json.loads((tmp_path / "d" / "checkpoints" / "checkpoint-10" / "trainer_state.json").read_text())
    evals = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert sorted(evals) == [2, 4, 6, 8, 10]
    assert result.global_step == 10 and result.best_step == min(evals, key=evals.get) < 10, evals
    assert result.val_metrics["val_loss"] == pytest.approx(evals[result.best_step])
    final = weights(tmp_path / "d" / "model")
    assert final.keys() == weights(tmp_path / "d" / "best" / f"step-{result.best_step}").keys()
    assert all(torch.equal(v, weights(tmp_path / "d" / "best" / f"step-{result.best_step}")[k]) for k, v in final.items())
    last = weights(tmp_path / "d" / "checkpoints" / "checkpoint-10")
    assert any(k.startswith("distill_projections.") for k in last)  # trained and checkpointed ...
    assert not any(k.startswith("distill_projections.") for k in final)  # ... but not the student's weights
    assert any(not torch.equal(v, last[k]) for k, v in final.items())  # not the last weights


def test_distillation_resumes_from_its_last_complete_checkpoint_like_an_uninterrupted_run(
    tiny_config, splits, teacher_dir, tmp_path
):
    """Run to the end, then make it look killed after step 9's checkpoint began: no model, no
    result, checkpoint-10 gone, checkpoint-9 without its trainer state. The re-run resumes at 6
    and ends with the uninterrupted run's weights, best step and metrics (tolerance 1e-5)."""
    cfg = with_distill(
        tiny_config,
        {"eval_steps": 2, "checkpoint_steps": 3, "keep_checkpoints": 5},
        teacher=str(teacher_dir),
        student_layers=2,
        epochs=1,
        learning_rate=1e-3,
        batch_size=16,
    )
    run = tmp_path / "d"
    plan(cfg, splits, run, tmp_path / "logits")
    reference = distil(cfg, splits, run, tmp_path / "tok")
    expected = weights(run / "model")
    assert reference.global_step == 10 and reference.best_step is not None and reference.resumed_from_step == 0
    shutil.rmtree(run / "model")
    (run / "result.json").unlink()
    shutil.rmtree(run / "checkpoints" / "checkpoint-10")
    (run / "checkpoints" / "checkpoint-9" / "trainer_state.json").unlink()  # killed mid-save
    resumed = distil(cfg, splits, run, tmp_path / "tok")
    assert resumed.resumed_from_step == 6 and resumed.global_step == 10
    assert resumed.best_step == reference.best_step
    assert resumed.tokenize_cache_hits == {"train": True, "validation": True}  # no re-tokenising
    assert abs(resumed.val_metrics["val_loss"] - reference.val_metrics["val_loss"]) < 1e-5
    final = weights(run / "model")
    gap = max((final[k] - expected[k]).abs().max().item() for k in expected)
    assert gap < 1e-5, f"resumed vs uninterrupted: max |dw| = {gap:.2e}"


@pytest.mark.slow  # torchrun start-up dominates
def test_distill_stage_runs_under_torchrun_and_reports(tiny_config, splits, teacher_dir, tmp_path):
    cfg = with_distill(tiny_config, student_layers=[1, 3], epochs=1, learning_rate=1e-3, batch_size=16, report_latency_texts=10)
    outcome = stages.distill(cfg, splits, tmp_path / "distill", teacher_dir=str(teacher_dir))
    assert outcome.plan.layer_map == [1, 3]
    assert json.loads((tmp_path / "distill" / "result.json").read_text())["global_step"] > 0
    assert outcome.result.best_step is not None  # the fine-tuning run loop, under torchrun too
    report = stages.evaluate_student(cfg, outcome, splits).comparison
    assert report.student.params < report.teacher.params
    assert report.student.size_mb < report.teacher.size_mb
    assert 0.0 <= report.agreement <= 1.0 and report.n_test == splits.rows["test"]
    assert report.student.latency_p95_ms >= report.student.latency_p50_ms > 0
    assert {r["measure"] for r in report.rows()} >= {"accuracy", "macro_f1", "throughput_b32", "agreement"}
    assert (tmp_path / "distill" / "distill_report.json").is_file()
    # distill.onnx_export (on by default): model.onnx beside the student's weights, checked against torch.
    assert report.onnx.path == str(Path(outcome.model_dir) / "model.onnx")
    assert report.onnx.parity_max_abs_diff <= 1e-3 and report.onnx.throughput_b32 > 0
