"""Lineage end to end: a registered version names its data version, and DVC gives that exact data back."""

from __future__ import annotations

import re
import shutil

import pytest
from typer.testing import CliRunner

from textclf import registry, stages
from textclf.cli import app
from textclf.config import build_config
from textclf.data.sources import content_digest, load_source
from textclf.lineage import describe_lineage, record_data_lineage
from textclf.versioning import add_data, path_md5, restore_data, source_version


@pytest.mark.slow  # real DVC + MLflow + registry: ~30 s here
def test_registered_version_restores_its_training_data(tmp_path, rows_csv, tiny_model, make_dvc_repo):
    repo = make_dvc_repo(tmp_path)
    cfg = build_config({"output_dir": str(tmp_path / "outputs"), "data": {"source": str(repo / "data" / "raw"), "seed": 1}})
    v1 = add_data(rows_csv, cfg.data, repo)

    # What the flow does: ingest + split the tracked folder, tag the run, register with the run's lineage.
    out = tmp_path / "run"
    data = stages.split(cfg, stages.ingest(cfg, out), out)
    run = stages.start_tracking(cfg, "lineage-test", {"prefect.flow_run_id": "flow-123"})
    run_id = run.run_id
    lineage = record_data_lineage(run, data.path, data.fingerprint, source_version(cfg.data, repo))
    assert lineage.data_version == v1.md5 and lineage.tags["prefect.flow_run_id"] == "flow-123"
    version = registry.register_model(cfg.registry_target(), run_id, tiny_model, lineage.version_tags())
    run.end()

    # New data arrives; the old version's files leave the workspace and the local cache.
    extra = tmp_path / "drops" / "more.csv"
    extra.parent.mkdir()
    extra.write_text("text,label,movie_name\nanother review,positive,X\nand one more,negative,Y\n")
    v2 = add_data(extra, cfg.data, repo)
    assert v2.changed and v2.md5 != v1.md5
    shutil.rmtree(repo / ".dvc" / "cache")

    info = describe_lineage(cfg.tracking_target(), version.uri)
    assert info.registered["tags"]["data.dvc_md5"] == info.data_dvc_md5 == v1.md5
    assert info.registered["tags"]["data.fingerprint"] == data.fingerprint
    assert info.prefect_flow_run_id == "flow-123"
    assert len(info.git_commit) in (40, len("unknown"))
    assert {d["context"] for d in info.datasets} == {"train", "validation", "test"}
    assert info.data_digest == data.fingerprint

    restored = restore_data(info.data_dvc_md5, repo / "restored")  # pulled from the remote
    assert path_md5(restored) == v1.md5
    assert (restored / rows_csv.name).read_bytes() == rows_csv.read_bytes()
    again = load_source(cfg.data.model_copy(update={"source": str(restored)}))
    assert content_digest(again) == info.data_digest

    result = CliRunner().invoke(app, ["lineage", version.uri, "--set", f"output_dir={cfg.output_dir}"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"^data version\s+{v1.md5} \(restore: textclf data restore", result.output, re.M)
    assert re.search(r"^prefect flow run\s+flow-123$", result.output, re.M)
    assert re.search(rf"^mlflow run\s+{run_id} \(FINISHED\)$", result.output, re.M)
