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
