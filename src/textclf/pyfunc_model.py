"""The registered classifier's code (MLflow models-from-code): `serving.save_pyfunc` logs this file, and
MLflow runs it to load the model (`mlflow models serve`, `mlflow.pyfunc.load_model`). Nothing is pickled:
the weights load from the safetensors folder in `context.artifacts`."""

from __future__ import annotations

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

from textclf.modeling import load_trained, predict_proba, saved_max_length
from textclf.serving import ARTIFACT_KEY


class TextClassifierModel(PythonModel):
    """DataFrame with a `text` column (or a list of str) -> label and score per row."""

    def load_context(self, context) -> None:
        self.model, self.tokenizer = load_trained(context.artifacts[ARTIFACT_KEY])
        self.max_length = saved_max_length(self.tokenizer)  # train.max_length, saved by the training runner

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):  # or a plain list of str
            texts = model_input["text"].astype(str).tolist()
        else:
            texts = [str(t) for t in model_input]
        preds = predict_proba(self.model, self.tokenizer, texts, max_length=self.max_length)
        return pd.DataFrame({"label": preds.names, "score": preds.scores.astype(float)})


# MLflow executes this file under a module name of its own and takes the model from set_model; imported as
# textclf.pyfunc_model (tools, tests) it only defines the class.
if __name__ != "textclf.pyfunc_model":
    mlflow.models.set_model(TextClassifierModel())
