"""dvc.yaml chains its stages like the Prefect flow: gate -> augment -> train, through the real CLI."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk

REPO = Path(__file__).resolve().parents[2]


def _textclf(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "textclf", *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _option(cmd: str, name: str) -> str | None:
    words = shlex.split(cmd)
    return words[words.index(name) + 1] if name in words else None


def _outs(stage: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])}


def test_each_stage_reads_what_an_earlier_stage_wrote_and_training_reads_the_augmented_gate_rows():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    written: set[str] = set()
    for name, stage in stages.items():
        data = _option(stage["cmd"], "--data")
        if data is not None:
            assert any(data == o or data.startswith(o + "/") for o in written), (
                f"{name} reads {data}, which no earlier stage writes"
            )
            assert data in stage["deps"], f"{name} reads {data} without declaring it a dependency"
        written |= _outs(stage)
    order = list(stages)
    assert order.index("validate") < order.index("augment") < order.index("train")
    assert _option(stages["augment"]["cmd"], "--data") == "outputs/dvc/validated"
    for name in ("train", "evaluate", "distill"):
        assert _option(stages[name]["cmd"], "--data") == "outputs/dvc/augmented", name


def test_every_dvc_command_parses_and_names_each_path_it_needs():
    """The DVC-stage commands take their paths as required options (no second default to drift from
    dvc.yaml): each stage's cmd parses, and leaving a path out is refused."""
    import typer

    from textclf.cli import app

    group = typer.main.get_command(app)
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        words = shlex.split(stage["cmd"])
        assert words[:2] == ["textclf", name], stage["cmd"]
        command = group.commands[name]
        command.make_context(name, words[2:])  # raises on a missing or unknown option
        paths = [p for p in command.params if p.name in {"data", "out", "model_dir"}]
        assert paths and all(p.required for p in paths), name
        args = words[2:]
        at = args.index("--out")
        with pytest.raises(Exception, match="Missing parameter: out") as missing:
            command.make_context(name, args[:at] + args[at + 2 :])
        assert type(missing.value).__name__ == "MissingParameter"


def test_validate_and_augment_commands_hand_the_next_stage_its_splits(tmp_path, rows_csv):
    source = ["--set", f"data.source={rows_csv}", "--set", "data.seed=1", "--set", f"output_dir={tmp_path / 'o'}"]
    _textclf("ingest", "--out", str(tmp_path / "data"), *source, cwd=tmp_path)
    splits = load_from_disk(str(tmp_path / "data" / "splits"))

    # Nothing dropped: validated/ holds the same rows.
    _textclf(
        "validate",
        "--data",
        str(tmp_path / "data" / "splits"),
        "--out",
        str(tmp_path / "gate"),
        "--set",
        "validate.max_duplicate_rate=0.2",
        *source,
        cwd=tmp_path,
    )
    validated = load_from_disk(str(tmp_path / "gate" / "validated"))
    assert {k: validated[k]["text"] for k in splits} == {k: splits[k]["text"] for k in splits}

    # Quarantine: the rows that failed are not in validated/.
    longest = max(len(t) for t in splits["train"]["text"])
    _textclf(
        "validate",
        "--data",
        str(tmp_path / "data" / "splits"),
        "--out",
        str(tmp_path / "q"),
        "--set",
        "validate.mode=quarantine",
        "--set",
        f"validate.max_text_chars={longest - 1}",
        "--set",
        "validate.max_duplicate_rate=0.2",
        *source,
        cwd=tmp_path,
    )
    kept = load_from_disk(str(tmp_path / "q" / "validated"))
    assert kept["train"].num_rows < splits["train"].num_rows
    assert max(len(t) for t in kept["train"]["text"]) < longest

    # Augmentation off: augmented/ is an unchanged copy, and no partial folder is left behind.
    _textclf(
        "augment",
        "--data",
        str(tmp_path / "q" / "validated"),
        "--out",
        str(tmp_path / "q"),
        "--set",
        "augment.enabled=false",
        *source,
        cwd=tmp_path,
    )
    copied = load_from_disk(str(tmp_path / "q" / "augmented"))
    assert {k: copied[k]["text"] for k in kept} == {k: kept[k]["text"] for k in kept}
    assert not list((tmp_path / "q").glob("*.partial"))
    assert "augmentation off" in (tmp_path / "q" / "augment" / "augment_report.md").read_text()  # a DVC out
