"""The pre-flight data check: heads of the source's files decode and name the columns; nothing is read in full."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from textclf.config import build_config
from textclf.errors import DataError
from textclf.preflight import check_data


def data(source, **kw):
    return build_config({"data": {"source": str(source), **kw}}).data


def test_saved_datasets_and_dataset_dicts_pass_without_reading_their_json_files(tmp_path):
    rows = Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", "y", "x"]})
    rows.save_to_disk(str(tmp_path / "one"))
    DatasetDict(train=rows, test=rows).save_to_disk(str(tmp_path / "dict"))
    check_data(data(tmp_path / "one"))
    check_data(data(tmp_path / "dict"))  # dataset_dict.json is no drop file with a header


def test_a_folder_file_without_the_label_column_is_named(tmp_path):
    (tmp_path / "drops").mkdir()
    (tmp_path / "drops" / "a.csv").write_text("text,label\nfine,pos\n")
    (tmp_path / "drops" / "b.jsonl").write_text('{"text": "meh", "sentiment": "neg"}\n')
    with pytest.raises(DataError, match=r"b.jsonl: column 'label' \(data.label_column\) not found"):
        check_data(data(tmp_path / "drops"))
    check_data(data(tmp_path / "drops" / "a.csv"))


def test_the_head_decodes_with_the_configured_encoding(tmp_path):
    path = tmp_path / "legacy.tsv"
    path.write_bytes("text\tlabel\ncaf\u00e9 cr\u00e8me\tpos\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"line 2, character 4: byte 0xe9 is not valid UTF-8.*data.encoding=cp1252 / auto"):
        check_data(data(path))
    check_data(data(path, encoding="cp1252"))
    check_data(data(path, encoding="auto"))  # auto decides on the whole file, at ingest
    with pytest.raises(DataError, match=r"column 'label ' \(data.label_column\) not found; columns are \['text', 'label'\]"):
        check_data(data(path, encoding="cp1252", label_column="label "))
