"""Frozen encoders on a tiny real BERT: backends agree, order survives length sorting, the cache is keyed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from textclf.config import PACKAGED_MPNET
from textclf.errors import ConfigError, ModelNotFound
from textclf.modeling import resolve_model
from textclf.settings import packaged_mpnet_path
from textclf.train.encoders import encode, load_encoder


@pytest.fixture(scope="module")
def texts(rows_csv) -> list[str]:
    return pd.read_csv(rows_csv)["text"].astype(str).tolist()[:40]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """One cache folder for the ONNX tests: the tiny encoder is exported (and quantised) once."""
    return tmp_path_factory.mktemp("encoder-cache")


# The settings every call names (encode and load_encoder have no defaults of their own: the config declares them).
TORCH = {"backend": "torch", "quantize": False, "pooling": "mean", "max_length": 128}
BATCH = {"batch_size": 64}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_fp32_matches_torch_and_int8_stays_close(tiny_model, texts, onnx_cache):
    onnx = {**TORCH, "backend": "onnx", "onnx_dir": onnx_cache / "onnx", "batch_size": 8}
    ref = encode(texts, tiny_model, **{**TORCH, "batch_size": 8}).vectors
    fp32 = encode(texts, tiny_model, **{**onnx, "quantize": False}).vectors
    int8 = encode(texts, tiny_model, **{**onnx, "quantize": True}).vectors
    assert ref.shape == fp32.shape == int8.shape == (len(texts), 32)
    assert ref.dtype == fp32.dtype == int8.dtype == np.float32
    np.testing.assert_allclose(fp32, ref, atol=1e-4)
    assert cosine(int8, ref).min() > 0.99
    assert not np.allclose(int8, ref, atol=1e-6)  # it really is the quantised model
    # Each export is cached under its own key, and a later call reuses it (no second folder).
    assert len(list((onnx_cache / "onnx").glob("*/encoder.onnx"))) == 2
    encode(texts[:2], tiny_model, **{**onnx, "quantize": True})
    assert len(list((onnx_cache / "onnx").iterdir())) == 2


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_length_sorted_batches_come_back_in_input_order(tiny_model, texts, pooling):
    frozen = load_encoder(tiny_model, **{**TORCH, "pooling": pooling})
    mixed = [texts[0] + " " + texts[1], "ok", texts[2], "a b c", texts[3] * 3]  # lengths out of order
    batched = frozen.embed(mixed, batch_size=3)
    one_by_one = np.concatenate([frozen.embed([t], batch_size=1) for t in mixed])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_cache_encodes_only_new_texts_and_is_keyed_by_max_length(tiny_model, texts, tmp_path):
    first = encode(texts[:20], tiny_model, **TORCH, **BATCH, cache_dir=tmp_path)
    assert (first.encoded, first.cached) == (20, 0)
    again = encode(texts[:20], tiny_model, **TORCH, **BATCH, cache_dir=tmp_path)
    assert (again.encoded, again.cached) == (0, 20)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    more = encode(texts[:20] + texts[20:23], tiny_model, **TORCH, **BATCH, cache_dir=tmp_path)
    assert (more.encoded, more.cached) == (3, 20)
    np.testing.assert_array_equal(more.vectors[:20], first.vectors)
    shorter = encode(texts[:20], tiny_model, **{**TORCH, "max_length": 16}, **BATCH, cache_dir=tmp_path)
    assert (shorter.encoded, shorter.cached) == (20, 0)
    assert not np.allclose(shorter.vectors, first.vectors)  # some texts are longer than 16 tokens
    keys = list((tmp_path / "vectors").iterdir())
    assert len(keys) == 2 and all((k / "meta.json").is_file() for k in keys)
    assert not list(tmp_path.rglob("*.tmp*"))  # writes went through a temporary name, then a rename


def test_duplicate_texts_are_encoded_once(tiny_model, texts, tmp_path):
    got = encode([texts[0], texts[1], texts[0]], tiny_model, **TORCH, **BATCH, cache_dir=tmp_path)
    assert (got.encoded, got.cached) == (2, 0)
    np.testing.assert_array_equal(got.vectors[0], got.vectors[2])
    assert encode([], tiny_model, **TORCH, **BATCH).vectors.shape == (0, 32)


def test_bad_choices_give_one_line(tiny_model):
    with pytest.raises(ConfigError, match="backend"):
        load_encoder(tiny_model, **{**TORCH, "backend": "tensorrt"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pooling"):
        load_encoder(tiny_model, **{**TORCH, "pooling": "max"})  # type: ignore[arg-type]


def test_packaged_mpnet_resolves_to_the_unpacked_folder():
    folder = resolve_model(PACKAGED_MPNET)
    assert folder.endswith("all-mpnet-base-v2")
    assert (packaged_mpnet_path() / "model.safetensors").is_file()


def test_missing_packaged_mpnet_says_run_make_setup(tmp_path):
    (tmp_path / "all-mpnet-base-v2").mkdir()  # a folder left without its files counts as missing
    with pytest.raises(ModelNotFound) as err:
        packaged_mpnet_path(tmp_path)
    message = str(err.value)
    assert "all-mpnet-base-v2" in message and "make setup" in message and "\n" not in message
