"""Every source normalises to text / ClassLabel label; every bad input is one clear DataError line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from textclf.config import DataConfig, build_config
from textclf.data import readers
from textclf.data.sources import content_digest, export_packaged_corpus, read_source
from textclf.errors import ConfigError, DataError

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
    message = one_line_error(tmp_path / "a.csv", "line 3, character 3: byte 0xef is not valid UTF-8")
    assert "iconv" in message and "set data.encoding=cp1252 / auto" in message


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


def test_missing_label_is_dropped_counted_and_named(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,pos\nb,\nc,neg\n")
    table = load(tmp_path / "a.csv")
    assert table.dataset["text"] == ["a", "c"] and table.missing_labels == 1
    assert table.notes == [
        f"{tmp_path / 'a.csv'}: dropped 1 row(s) with no 'label' (empty, NA, N/A, null, None or nan: a.csv row 2)"
    ]


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


# --- encodings, missing labels, the streamed readers ---------------------------------------------

WESTERN = [("café “naïve” — 5 €, très bien", "positive"), ("Señor Müller’s dull film", "negative")]


def cp1252_rows(tmp_path, real_rows, n: int = 300) -> pd.DataFrame:
    """Real rows that cp1252 can hold (most are plain ASCII) plus Western-European ones."""
    frame = pd.read_csv(real_rows(tmp_path / "real.csv", n), dtype=str)[["text", "label"]]
    frame = frame[frame["text"].map(lambda t: t.encode("cp1252", errors="ignore").decode("cp1252") == t)]
    return pd.concat([pd.DataFrame(WESTERN, columns=["text", "label"]), frame], ignore_index=True)


def write_encoded(path: Path, frame: pd.DataFrame, encoding: str) -> Path:
    """The frame as CSV, TSV, JSON lines or one JSON array (by suffix), in `encoding`."""
    if path.suffix in (".csv", ".tsv"):
        text = frame.to_csv(index=False, sep="\t" if path.suffix == ".tsv" else ",")
    elif path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records"))
    else:
        text = json.dumps(frame.to_dict("records"), ensure_ascii=False, indent=1)
    path.write_bytes(text.encode(encoding))
    return path


def test_cp1252_file_reads_with_the_codec_and_with_auto(tmp_path, real_rows):
    frame = cp1252_rows(tmp_path, real_rows)
    path = write_encoded(tmp_path / "a.csv", frame, "cp1252")
    declared = load(path, encoding="cp1252")
    assert declared.dataset["text"] == frame["text"].tolist() and declared.encodings == {"a.csv": "cp1252"}
    detected = load(path, encoding="auto")
    assert content_digest(detected.dataset) == content_digest(declared.dataset)
    assert detected.encodings == {"a.csv": "cp1252"}
    assert f"{path}: decoded as cp1252 (detected; set data.encoding=cp1252 to pin it)" in detected.notes


def test_cp1252_file_with_the_default_is_one_line_naming_byte_line_and_option(tmp_path, real_rows):
    path = write_encoded(tmp_path / "a.csv", cp1252_rows(tmp_path, real_rows), "cp1252")  # line 2 starts '"caf\xe9'
    message = one_line_error(path, r"a.csv: line 2, character 5: byte 0xe9 is not valid UTF-8")
    assert "iconv -f cp1252 -t utf-8 a.csv" in message and "set data.encoding=cp1252 / auto" in message


def test_utf8_file_under_auto_reads_as_utf8(tmp_path):
    table = load(
        write_encoded(tmp_path / "a.jsonl", pd.DataFrame(WESTERN * 2, columns=["text", "label"]), "utf-8"), encoding="auto"
    )
    assert table.dataset["text"][0] == WESTERN[0][0] and table.encodings == {"a.jsonl": "utf-8"} and table.notes == []


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl", "a.json"])
def test_every_text_source_type_honours_the_encoding(tmp_path, name):
    frame = pd.DataFrame(WESTERN * 2, columns=["text", "label"])
    for encoding in ("cp1252", "utf-16"):
        path = write_encoded(tmp_path / name, frame, encoding)
        assert load(path, encoding=encoding).dataset["text"] == frame["text"].tolist(), encoding
    write_encoded(tmp_path / name, frame, "cp1252")
    one_line_error(tmp_path / name, "byte 0xe9 is not valid UTF-8.*data.encoding=cp1252 / auto")


def test_a_byte_the_declared_codec_lacks_names_it(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\nok,pos\nbad \x81 byte,neg\n")  # 0x81: undefined in cp1252
    message = one_line_error(
        tmp_path / "a.csv", r"line 3, character 5: byte 0x81 is not valid cp1252 \(data.encoding=cp1252\)", encoding="cp1252"
    )
    assert "set data.encoding to the file's codec" in message


def test_bad_byte_past_the_first_block_names_its_line(tmp_path):
    lines = readers.BLOCK_BYTES // 20 + 10  # 20-byte rows: the bad one sits beyond the first block
    body = b"".join(b"row %09d ok,pos\n" % i for i in range(lines))
    (tmp_path / "a.csv").write_bytes(b"text,label\n" + body + b"caf\xe9,neg\n")
    one_line_error(tmp_path / "a.csv", f"line {lines + 2}, character 4: byte 0xe9")


@pytest.mark.parametrize("value", ["utf-9", "base64"])
def test_unknown_codec_is_a_config_error(value):
    with pytest.raises(ConfigError, match=rf"data.encoding.*unknown text encoding '{value}'.*'auto'"):
        build_config({"data": {"encoding": value}})
    assert build_config({"data": {"encoding": "AUTO"}}).data.encoding == "auto"


def test_na_labels_are_dropped_and_counted_in_every_format(tmp_path):
    labels = ["pos", "NA", "n/a", "NULL", "None", "nan", "", "  ", "neg", "NaN"]
    frame = pd.DataFrame({"text": ["NA", *(f"t{i}" for i in range(1, 10))], "label": labels})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.jsonl").write_text('{"text": "u", "label": null}\n{"text": "v", "label": "neg"}\n')
    table = load(tmp_path)
    assert table.dataset["text"] == ["NA", "t8", "NA", "t8", "v"]  # "NA" as a text is a text
    assert table.missing_labels == 8 + 8 + 1 and table.dataset.features["label"].names == ["neg", "pos"]
    assert table.notes == [
        f"{tmp_path}: dropped 17 row(s) with no 'label' (empty, NA, N/A, null, None or nan: a.csv row 2, "
        "a.csv row 3, a.csv row 4 and 14 more)"
    ]


def test_only_missing_labels_is_one_line(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,NA\nb,null\n")
    one_line_error(tmp_path / "a.csv", r"no row has a 'label' \(all 2 empty, NA, null, None or nan: a.csv row 1, a.csv row 2\)")


def test_streamed_readers_equal_the_pandas_reading_of_real_rows(tmp_path, real_rows):

    path = real_rows(tmp_path / "r.csv", 400)
    # What ingest did before the streamed readers: pandas reads everything as strings.
    ref = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    names = sorted(ref["label"].unique())
    table = load(path, group_column="movie_name")
    assert table.dataset.features["label"].names == names
    assert table.dataset["text"] == ref["text"].fillna("").tolist()
    assert table.dataset["label"] == [names.index(v) for v in ref["label"]]
    assert table.dataset["group"] == ref["movie_name"].tolist()
    ref.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    ref.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    ref.to_parquet(tmp_path / "r.parquet")
    for other in ("r.jsonl", "r.tsv", "r.parquet"):
        assert content_digest(load(tmp_path / other, group_column="movie_name").dataset) == content_digest(table.dataset), other


def test_max_rows_sample_is_the_seeded_stratified_one(tmp_path, real_rows):

    path = real_rows(tmp_path / "r.csv", 400)
    ref = pd.read_csv(path, dtype=str)
    parts = [g.sample(n=round(len(g) * 0.25), random_state=7) for _, g in ref.groupby("label", sort=True)]
    expected = pd.concat(parts).sort_index()["text"].tolist()
    assert load(path, max_rows=100, seed=7).dataset["text"] == expected


def test_row_with_too_few_fields_is_one_line(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,pos\nno label here\n")
    one_line_error(tmp_path / "a.csv", "cannot be parsed as CSV .*Expected 2 columns, got 1")


def test_json_lines_with_mixed_label_types_read_like_before(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "two"}\n{"text": 3, "label": 1}\n')
    ds = load(tmp_path / "a.jsonl").dataset
    assert ds["text"] == ["a", "b", "3"] and ds.features["label"].names == ["1", "two"] and ds["label"] == [0, 1, 0]


@pytest.mark.parametrize(
    ("codec", "setting", "default_error"),
    [
        ("latin-1", "latin-1", "byte 0xe9 is not valid UTF-8"),
        ("cp1252", "cp1252", "byte 0xe9 is not valid UTF-8"),
        ("utf-8-sig", "utf-8", None),  # a byte-order mark (Excel's UTF-8) reads with the default
    ],
)
def test_legacy_encodings_and_a_bom_read_with_the_option_and_fail_in_one_line_without(
    tmp_path, real_rows, codec, setting, default_error
):
    frame = cp1252_rows(tmp_path, real_rows, 60)
    if codec == "latin-1":  # latin-1 holds no curly quotes or euro sign
        frame = frame.assign(text=frame["text"].str.replace("“", '"').str.replace("”", '"').str.replace("€", "EUR"))
        frame = frame.assign(text=frame["text"].str.replace("’", "'").str.replace("—", "-"))
    path = write_encoded(tmp_path / f"{codec}.csv", frame, codec)
    table = load(path, encoding=setting).dataset
    assert table["text"] == frame["text"].tolist() and table.column_names[0] == "text"  # no BOM in the header
    if default_error is None:
        assert load(path).dataset["text"] == frame["text"].tolist()
    else:
        message = one_line_error(path, default_error)
        assert "data.encoding=" in message and path.name in message
