"""Bad input at the CLI: one clear line, a non-zero exit, nothing trained or registered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEXTCLF = str(Path(sys.executable).parent / "textclf")  # the console script users run (with `run`, `worker`)


def _textclf(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([TEXTCLF, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.epochs=0"], "train.epochs"),
        (["train.learning_rate=-1"], "train.learning_rate"),
        (["train.epoch=1"], "unknown config key 'train.epoch'"),
        (["train.model=/no/such/model"], "/no/such/model"),
        (["data.source=/no/such/data.csv"], "/no/such/data.csv"),
        (["data.label_column=sentiment"], "'sentiment'"),
    ],
)
def test_run_refuses_bad_input_in_one_line(tmp_path, rows_csv, overrides, needle):
    args = ["run", "--set", f"output_dir={tmp_path / 'out'}", "--set", f"data.source={rows_csv}"]
    for item in overrides:
        args += ["--set", item]
    result = _textclf(*args, cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("textclf: error:") and needle in errors[0]
    assert not (tmp_path / "out" / "mlflow.db").exists(), "nothing may be tracked or registered"


def test_predict_without_a_champion_says_how_to_get_one(tmp_path):
    result = _textclf("predict", "--set", f"output_dir={tmp_path / 'out'}", "some text", cwd=tmp_path)
    assert result.returncode != 0
    assert "textclf run" in result.stderr and "Traceback" not in result.stderr


def test_help_everywhere(tmp_path):
    for command in ([], ["run"], ["worker"], ["predict"], ["train"], ["config", "show"]):
        result = _textclf(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage" in result.stdout, command


def test_a_data_error_inside_the_flow_is_one_line_with_the_log_path_and_a_failed_run(tmp_path, rows_csv):
    """The data gate fails inside the flow (12 rows < validate.min_rows): one error line, no traceback and no
    Prefect failure records on the console, the whole log (with them) in a file, the MLflow run FAILED with its
    reason, nothing registered."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    few = tmp_path / "twelve.csv"
    pd.read_csv(rows_csv).groupby("label").head(6).to_csv(few, index=False)
    out = tmp_path / "out"
    result = _textclf(
        "run", "--set", f"output_dir={out}", "--set", f"data.source={few}", "--set", "augment.enabled=false", cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr and "Finished in state Failed" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("textclf: error:")]
    assert len(errors) == 1 and "min_rows" in errors[0] and "observed 12" in errors[0], result.stderr[-2000:]
    (log_line,) = [line for line in result.stderr.splitlines() if line.startswith("textclf: full log of this run: ")]
    log = Path(log_line.rsplit(": ", 1)[1])
    assert log.parent == (out / "logs").resolve()
    text = log.read_text()
    assert "Traceback" in text and "ValidationFailed" in text and "Finished in state Failed" in text

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure.reason"].startswith("ValidationFailed: data validation failed: all: min_rows")
    assert client.search_registered_models() == []


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("cp1252", "line 2, character 12: byte 0xe8 is not valid UTF-8"),  # "un film très": after the quote
        ("folder-without-label", "column 'label' (data.label_column) not found"),
        ("missing-default", "data/raw does not exist"),
    ],
)
def test_run_checks_the_data_before_anything_starts(tmp_path, rows_csv, kind, needle):
    """Caught by the pre-flight (header, a decode of the head, columns), before Prefect or MLflow start."""
    import pandas as pd

    frame = pd.read_csv(rows_csv)
    args = ["run", "--set", f"output_dir={tmp_path / 'out'}"]
    if kind == "cp1252":
        frame.loc[0, "text"] = "un film très réussi, café crème"
        source = tmp_path / "legacy.csv"
        source.write_bytes(frame.to_csv(index=False).encode("cp1252"))
        args += ["--set", f"data.source={source}"]
    elif kind == "folder-without-label":
        source = tmp_path / "drops"
        source.mkdir()
        frame.to_csv(source / "a.csv", index=False)
        frame.rename(columns={"label": "sentiment"}).to_csv(source / "b.csv", index=False)
        args += ["--set", f"data.source={source}"]
    result = _textclf(*args, cwd=tmp_path)  # missing-default: the default data/raw, absent in tmp_path
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("textclf: error:") and needle in errors[0], result.stderr[-2000:]
    if kind == "cp1252":
        assert "data.encoding=cp1252" in errors[0] and "iconv" in errors[0]
    if kind == "missing-default":
        assert "textclf data seed" in errors[0] and "packaged:rotten_tomatoes" in errors[0]
    assert not (tmp_path / "out").exists(), "nothing may be written for input errors caught up front"
