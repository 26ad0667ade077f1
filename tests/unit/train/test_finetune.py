"""Fine-tuning pieces on the tiny real model and real rows: cache, arguments, checkpoints, early stop, best weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from safetensors.torch import load_file
from transformers import AutoTokenizer

from textclf import stages
from textclf.config import build_config
from textclf.modeling import load_trained
from textclf.train.finetune import (
    last_complete_checkpoint,
    run_training,
    tokenize_cached,
    training_arguments,
)


@pytest.fixture(scope="module")
def splits_dir(tmp_path_factory, rows_csv) -> Path:
    cfg = build_config({"data": {"source": str(rows_csv), "seed": 1}})
    out = tmp_path_factory.mktemp("splits")
    return Path(stages.split(cfg, stages.ingest(cfg, out), out).path)


def test_tokenisation_is_cached_in_arrow_and_reused(tmp_path, splits_dir, tiny_model):
    splits = load_from_disk(str(splits_dir))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    first, hits = tokenize_cached(splits, tokenizer, 64, tmp_path)
    assert hits == {"train": False, "validation": False, "test": False}
    files = sorted(tmp_path.glob("*.arrow"))
    assert len(files) == 3
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again, hits = tokenize_cached(load_from_disk(str(splits_dir)), tokenizer, 64, tmp_path)
    assert hits == {"train": True, "validation": True, "test": True}
    assert {f: f.stat().st_mtime_ns for f in tmp_path.glob("*.arrow")} == stamps  # nothing rewritten
    assert again["train"]["input_ids"] == first["train"]["input_ids"]
    assert again["train"]["length"] == [len(ids) for ids in first["train"]["input_ids"]]
    _, hits = tokenize_cached(splits, tokenizer, 32, tmp_path)  # another max_length: another key
    assert not any(hits.values())


def test_training_arguments_follow_the_config(tmp_path):
    cfg = build_config(
        {
            "train": {
                "warmup_ratio": 0.1,
                "grad_accum_steps": 4,
                "batch_size": 8,
                "eval_steps": 10,
                "checkpoint_steps": 30,
                "keep_checkpoints": 3,
                "ddp_timeout_s": 77,
                "best_metric": "loss",
                "seed": 7,
            }
        }
    ).train
    args = training_arguments(cfg, tmp_path)
    assert args.get_warmup_steps(200) == 20  # a share of the steps, not 0.1 steps
    assert (args.gradient_accumulation_steps, args.per_device_train_batch_size) == (4, 8)
    assert (args.eval_strategy, args.eval_steps, args.save_steps, args.save_total_limit) == ("steps", 10, 30, 3)
    assert args.ddp_timeout == 77 and args.seed == 7 and args.data_seed == 7
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"]
    assert args.dataloader_num_workers == 0  # 'auto' on CPU


def test_last_complete_checkpoint_skips_one_killed_mid_save(tmp_path):
    for step, complete in [(5, True), (10, True), (15, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_early_stopping_keeps_the_best_weights(tmp_path, splits_dir, tiny_model):
    """A learning rate of ~0 leaves accuracy flat: no evaluation beats the first, so patience 1
    stops at the second evaluation and the final model is the first evaluation's weights."""
    cfg = build_config(
        {
            "train": {
                "kind": "finetune",
                "model": str(tiny_model),
                "epochs": 3,
                "batch_size": 16,
                "learning_rate": 1e-12,
                "max_length": 64,
                "eval_steps": 2,
                "checkpoint_steps": 100,
                "early_stopping_patience": 1,
                "grad_accum_steps": 2,
                "logging_steps": 1,
            }
        }
    ).train
    result = run_training(cfg, splits_dir, tmp_path / "run", tmp_path / "cache")
    assert result is not None
    assert result.global_step == 4  # evaluations at 2 and 4; 3 epochs would be 15 steps
    assert result.best_step == 2
    final = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    best = load_file(str(tmp_path / "run" / "best" / "step-2" / "model.safetensors"))
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert set(result.val_metrics) == {"val_loss", "val_accuracy", "val_macro_f1"}
    assert result.tokens_real < result.tokens_padded <= 1.3 * result.tokens_real  # length grouping
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["global_step"] == 4
    assert load_trained(result.model_dir)[1].model_max_length == 64  # serving truncates like training


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings_keeps_the_word_vectors_and_trains_the_rest(tmp_path, splits_dir, tiny_model, freeze):
    from safetensors.torch import load_file as load

    cfg = build_config(
        {
            "train": {
                "kind": "finetune",
                "model": str(tiny_model),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-2,
                "max_length": 64,
                "checkpoint_steps": 100,
                "select_best": False,
                "freeze_embeddings": freeze,
            }
        }
    ).train
    result = run_training(cfg, splits_dir, tmp_path / "run", tmp_path / "cache")
    assert result is not None and result.best_step is not None  # scored, but the last weights are kept
    before = load(str(Path(tiny_model) / "model.safetensors"))
    after = load(str(tmp_path / "run" / "model" / "model.safetensors"))
    word = next(k for k in after if k.endswith("word_embeddings.weight"))
    layer = next(k for k in after if k.endswith("attention.self.query.weight"))
    before_word = before[next(k for k in before if k.endswith("word_embeddings.weight"))]
    before_layer = before[next(k for k in before if k.endswith("attention.self.query.weight"))]
    assert torch.equal(after[word], before_word) is freeze
    assert not torch.equal(after[layer], before_layer)
    assert load_trained(result.model_dir)[1].model_max_length == 64  # the last-weights save carries it too
