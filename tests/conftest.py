"""Shared fixtures: tiny real models and real rows, MLflow sqlite stores in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from textclf.settings import disable_telemetry

# Before anything imports prefect or mlflow: the servers and clients every test starts inherit these.
disable_telemetry()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

REPO = Path(__file__).resolve().parents[1]


def make_tiny_model(dest: Path) -> Path:
    """A 2-layer, 32-wide BERT on MiniLM's real tokenizer: trains in seconds on CPU."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from textclf.settings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def write_real_rows(dest: Path, n: int, seed: int = 0) -> Path:
    """`n` real Rotten Tomatoes rows (balanced), as CSV with text/label/movie_name columns."""
    from textclf.data.sources import read_packaged_corpus

    frame = read_packaged_corpus()
    per_class = n // 2
    parts = [g.sample(n=per_class, random_state=seed) for _, g in frame.groupby("label")]
    import pandas as pd

    pd.concat(parts).sample(frac=1, random_state=seed).to_csv(dest, index=False)
    return dest


def _make_dvc_repo(root: Path) -> Path:
    """git init + dvc init + a local default remote, all under `root` (the repository is `root/repo`)."""
    import subprocess

    from textclf.versioning import run_dvc

    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, timeout=30)
    run_dvc(repo, "init", "--quiet")
    run_dvc(repo, "remote", "add", "--default", "local", str(root / "remote"))
    return repo


@pytest.fixture(scope="session")
def make_dvc_repo():
    """make_dvc_repo(root) -> a throw-away git + DVC repository under `root` with a local default remote."""
    return _make_dvc_repo


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's own test harness: a temporary local server with a throwaway database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def real_rows():
    """write_real_rows(dest, n, seed=0) for tests that need real rows of their own size (`conftest` is not an
    importable name: each test folder may have one)."""
    return write_real_rows


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def rows_csv(tmp_path_factory) -> Path:
    return write_real_rows(tmp_path_factory.mktemp("rows") / "reviews.csv", 200)


@pytest.fixture()
def tiny_config(tmp_path, tiny_model, rows_csv):
    """Pipeline config on the tiny model and 200 real rows, all stores in tmp_path."""
    from textclf.config import build_config

    return build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "train": {
                "kind": "finetune",
                "model": str(tiny_model),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 64,
                "logging_steps": 2,
                "checkpoint_steps": 5,
            },
            "validate": {"max_duplicate_rate": 0.2},
            # Off unless a test is about them: both add minutes, and a 2-layer teacher has no 3-layer student.
            "augment": {"enabled": False},
            "distill": {"enabled": False, "student_model": ""},  # tests that turn it on get a layer student
        }
    )


# Real 200-row splits and an untrained tiny classifier folder, shared by evaluation and promotion tests.
@pytest.fixture(scope="session")
def splits_dir(tmp_path_factory, rows_csv):
    from textclf import stages
    from textclf.config import build_config

    out = tmp_path_factory.mktemp("splits")
    cfg = build_config({"data": {"source": str(rows_csv), "seed": 1}})
    return stages.split(cfg, stages.ingest(cfg, out), out).path


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, tiny_model):
    import torch

    from textclf.modeling import load_classifier

    torch.manual_seed(0)
    model, tokenizer = load_classifier(str(tiny_model), ["negative", "positive"])
    dest = tmp_path_factory.mktemp("tiny-clf")
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def reordered_classifier():
    """`reorder(src, dest, order)`: the same classifier with its classes listed in `order` (head rows permuted,
    so it predicts the same names under other ids), saved to `dest`."""

    def reorder(src, dest, order: list[str]):
        import torch

        from textclf.modeling import load_trained

        model, tokenizer = load_trained(src)
        rows = [model.config.id2label[i] for i in range(model.config.num_labels)]
        index = [rows.index(name) for name in order]
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[index].clone())
            model.classifier.bias.copy_(model.classifier.bias[index].clone())
        model.config.id2label = dict(enumerate(order))
        model.config.label2id = {name: i for i, name in enumerate(order)}
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
        return dest

    return reorder
