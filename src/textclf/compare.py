"""The run's models side by side on its validation split: the teacher, the distilled student, and the champions
they were gated against (e.g. a fine-tuned MiniLM from before the probe teacher), scored now on the same rows.

Promotion stays per registry name (textclf.promotion, on the test split); this table is the cross-kind view a
person reads to see which kind of model is best for what it costs: quality next to size and CPU throughput.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from textclf.config import RegistryTarget
from textclf.evaluate import classification_metrics, predict_split
from textclf.modeling import load_trained
from textclf.registry import load_registered
from textclf.train.probe import ProbeFit


@dataclass
class ModelScore:
    role: str  # "teacher", "student", "champion of <name>"
    model: str  # "this run" or "<name>/<version>"
    kind: str  # what the model is, e.g. "mpnet 12x768, frozen + logistic head (C=0.005)"
    params: int
    val_accuracy: float
    val_macro_f1: float
    test_accuracy: float | None = None  # where this run measured it
    throughput_b32: float | None = None  # texts/s on this machine's CPU at batch 32, where measured


@dataclass
class ModelComparison:
    split: str
    rows: list[ModelScore] = field(default_factory=list)

    def best(self, metric: str = "macro_f1") -> ModelScore:
        return max(self.rows, key=lambda r: getattr(r, f"val_{metric}"))

    def markdown(self) -> str:
        head = "| role | model | kind | params | val accuracy | val macro-F1 | test accuracy | texts/s (b32, CPU) |"
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            test = f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else ""
            speed = f"{r.throughput_b32:.1f}" if r.throughput_b32 is not None else ""
            lines.append(
                f"| {r.role} | {r.model} | {r.kind} | {r.params / 1e6:.1f}M | {r.val_accuracy:.4f} | "
                f"{r.val_macro_f1:.4f} | {test} | {speed} |"
            )
        return f"## Models on the {self.split} split\n\n" + "\n".join(lines) + "\n"

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: compare.<role>.val_accuracy, ... (roles with spaces get underscores)."""
        out: dict[str, float] = {}
        for r in self.rows:
            key = r.role.replace(" ", "_")
            out[f"compare.{key}.val_accuracy"] = r.val_accuracy
            out[f"compare.{key}.val_macro_f1"] = r.val_macro_f1
        return out

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "comparison.json").write_text(json.dumps(asdict(self), indent=2))
        (folder / "comparison.md").write_text(self.markdown())
        return folder


def describe(model, folder: Path | None) -> str:
    """'<type> <layers>x<width>' plus how it was trained, from the model's config and its folder."""
    config = model.config
    base = str(config.model_type).removeprefix("textclf-mean-")
    shape = f"{base} {getattr(config, 'num_hidden_layers', '?')}x{getattr(config, 'hidden_size', '?')}"
    fit = ProbeFit.read(folder) if folder is not None else None
    if fit is not None:
        return f"{shape}, frozen + logistic head (C={fit.c:g})"
    return f"{shape}, trained end to end"


def score_version(target: RegistryTarget, name: str, version: str, data_dir: str, split: str, batch_size: int) -> ModelScore:
    """A registered version, downloaded and scored now on `split` (weights from safetensors, its code never run)."""
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, folder = load_registered(target.mlflow, f"models:/{name}/{version}", Path(tmp))
        out = predict_split(model, tokenizer, data_dir, split, batch_size)
        quality = classification_metrics(out.y_true, out.preds.ids)
        return ModelScore(
            f"champion of {name}",
            f"{name}/{version}",
            describe(model, Path(folder)),
            sum(p.numel() for p in model.parameters()),
            quality["accuracy"],
            quality["macro_f1"],
        )


def score_folder(
    role: str, model_dir: str, val_metrics: dict[str, float], test_accuracy: float | None, throughput: float | None
) -> ModelScore:
    """A model this run trained: its validation metrics as training measured them (the same split)."""
    model, _ = load_trained(model_dir)
    return ModelScore(
        role,
        "this run",
        describe(model, Path(model_dir)),
        sum(p.numel() for p in model.parameters()),
        val_metrics.get("val_accuracy", float("nan")),
        val_metrics.get("val_macro_f1", float("nan")),
        test_accuracy,
        throughput,
    )
