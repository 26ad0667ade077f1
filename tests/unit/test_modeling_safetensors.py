"""Models load from safetensors only: a folder holding only a pickle checkpoint is refused, never unpickled."""

import shutil

import pytest
import torch

from textclf.errors import ModelNotFound
from textclf.modeling import load_classifier


def test_pickle_only_checkpoint_is_refused(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    weights = folder / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelNotFound, match="safetensors weights only"):
        load_classifier(str(folder), ["negative", "positive"])


def test_safetensors_checkpoint_loads(tiny_model):
    model, _ = load_classifier(str(tiny_model), ["negative", "positive"])
    assert model.config.num_labels == 2
