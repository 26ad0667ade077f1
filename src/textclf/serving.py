"""The classifier as an MLflow pyfunc model: safetensors weights, tokenizer and label names inside."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types import ColSpec, Schema

from textclf.errors import TextclfError
from textclf.modeling import load_trained, predict_proba, saved_max_length

ARTIFACT_KEY = "classifier"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "text")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
)


class TextClassifierModel(PythonModel):
    """pyfunc wrapper: DataFrame with a `text` column (or a list of str) -> label and score per row."""

    def load_context(self, context) -> None:
        self.model, self.tokenizer = load_trained(context.artifacts[ARTIFACT_KEY])
        self.max_length = saved_max_length(self.tokenizer)  # train.max_length, saved by the training runner

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text"].astype(str).tolist()
        else:
            texts = [str(t) for t in model_input]
        preds = predict_proba(self.model, self.tokenizer, texts, max_length=self.max_length)
        return pd.DataFrame({"label": preds.names, "score": preds.scores.astype(float)})


def _requirements() -> list[str]:
    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "pandas", "mlflow")] + ["textclf"]


def save_pyfunc(model_dir: Path, dest: Path) -> Path:
    """Package a trained classifier folder as an MLflow model folder at `dest`."""
    mlflow.pyfunc.save_model(
        path=str(dest),
        python_model=TextClassifierModel(),
        artifacts={ARTIFACT_KEY: str(model_dir)},
        signature=SIGNATURE,
        pip_requirements=_requirements(),  # explicit: inferring them would load the model again
    )
    return dest


def load_pyfunc(local_dir: str | Path):
    path = Path(local_dir)
    if not (path / "MLmodel").is_file():
        raise TextclfError(f"{path} is not an MLflow model folder (no MLmodel file)")
    return mlflow.pyfunc.load_model(str(path))
