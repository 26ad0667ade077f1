"""Build the student: a subset of the teacher's layers (DistilBERT-style) or another pretrained model."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import PreTrainedModel

from textclf.errors import ConfigError
from textclf.modeling import load_classifier


def layers_to_keep(spec: list[int] | int, n_layers: int) -> list[int]:
    """`[0, 2, 4]` as given (checked), or a count N -> evenly spaced `i * L // N` (3 of 6: [0, 2, 4])."""
    if isinstance(spec, int):
        if spec > n_layers:
            raise ConfigError(f"distill.student_layers={spec} but the teacher has only {n_layers} layers; use at most {n_layers}")
        return [i * n_layers // spec for i in range(spec)]
    bad = [i for i in spec if i >= n_layers]
    if bad:
        raise ConfigError(
            f"distill.student_layers {spec}: layers {bad} do not exist in a {n_layers}-layer "
            f"teacher; use indices 0..{n_layers - 1}"
        )
    return sorted(spec)


def encoder_layers(model: PreTrainedModel) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList) holding the transformer blocks."""
    n_layers = model.config.num_hidden_layers
    for module in model.modules():
        for attr in ("layer", "layers"):
            child = getattr(module, attr, None)
            if isinstance(child, nn.ModuleList) and len(child) == n_layers:
                return module, attr, child
    raise ConfigError(
        f"cannot find the {n_layers} encoder layers of {type(model).__name__}; "
        "set distill.student_model to a smaller pretrained model instead"
    )


def keep_layers(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """Drop every encoder layer not in `keep` (in place); embeddings and head stay as they are."""
    parent, attr, layers = encoder_layers(model)
    setattr(parent, attr, nn.ModuleList([layers[i] for i in keep]))
    model.config.num_hidden_layers = len(keep)
    return model


def build_layer_student(source: str, layers: list[int] | int, labels: list[str], dest: Path) -> tuple[Path, list[int]]:
    """Save a student made of `layers` of the model at `source` to `dest`; returns (dest, kept layers)."""
    model, tokenizer = load_classifier(source, labels)
    keep = layers_to_keep(layers, model.config.num_hidden_layers)
    keep_layers(model, keep)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest, keep


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
