"""The classifier as an MLflow pyfunc model: safetensors weights, tokenizer and label names inside, and the
model's code as a file (models-from-code, textclf/pyfunc_model.py), never a pickle."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from textclf.errors import ModelNotFound

ARTIFACT_KEY = "classifier"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # a fixed file of this package
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "text")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
)
# Weight files that are pickles (torch.save, pickle, joblib): loading one can run code.
PICKLE_PATTERNS = ("*.bin", "*.pkl", "*.pickle", "*.pt", "*.pth", "*.ckpt", "*.joblib")


def pickle_files(folder: Path) -> list[str]:
    return sorted({p.name for pattern in PICKLE_PATTERNS for p in Path(folder).glob(pattern)})


def classifier_folder(root: Path, what: str) -> Path:
    """The Hugging Face classifier folder (config.json + safetensors) in `root` or below it, e.g. inside a
    downloaded MLflow model. A folder whose weights are only pickles is refused, not loaded."""
    candidates = sorted(p.parent for p in Path(root).rglob("config.json"))
    with_safetensors = [c for c in candidates if any(c.glob("*.safetensors"))]
    if with_safetensors:
        return with_safetensors[0]
    pickled = {c: pickle_files(c) for c in candidates if pickle_files(c)}
    if pickled:
        folder, names = next(iter(pickled.items()))
        raise ModelNotFound(
            f"{what}: {folder.name}/ holds pickled weights ({', '.join(names)}) and no safetensors; "
            "textclf loads safetensors only (re-save it with save_pretrained)"
        )
    raise ModelNotFound(f"{what}: no Hugging Face model folder (config.json + *.safetensors) in it")


def _requirements() -> list[str]:
    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "pandas", "mlflow")] + ["textclf"]


def save_pyfunc(model_dir: Path, dest: Path) -> Path:
    """Package a trained classifier folder as an MLflow model folder at `dest` (code file, no pickle)."""
    model_dir = Path(model_dir)
    if classifier_folder(model_dir, str(model_dir)) != model_dir or pickle_files(model_dir):
        raise ModelNotFound(
            f"{model_dir}: not a trained model folder of safetensors weights only (pickles: {pickle_files(model_dir)})"
        )
    mlflow.pyfunc.save_model(
        path=str(dest),
        python_model=str(MODEL_CODE),  # models-from-code: MLflow copies the file and runs it to load the model
        artifacts={ARTIFACT_KEY: str(model_dir)},
        signature=SIGNATURE,
        pip_requirements=_requirements(),  # explicit: inferring them would load the model again
    )
    return dest
