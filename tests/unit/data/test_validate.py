"""The GX data gate on real datasets: what passes, what each failed expectation reports, quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

from textclf import stages
from textclf.config import ValidateConfig, build_config
from textclf.data.sources import content_digest
from textclf.data.validate import ValidationReport, run_gate
from textclf.errors import ValidationFailed

FEATURES = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos", "neutral"])})
LONG = "a very long review " * 20  # 380 characters, over max_text_chars below
CFG = dict(max_text_chars=200, max_duplicate_rate=0.05, min_class_share=0.05, min_rows=20)


def dataset(rows: list[tuple[str | None, int]]) -> Dataset:
    return Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]}, features=FEATURES)


def clean_rows(prefix: str, n: int, labels=(0, 1, 2)) -> list[tuple[str, int]]:
    return [(f"{prefix} review number {i} says something", labels[i % len(labels)]) for i in range(n)]


def dirty_splits() -> DatasetDict:
    """Every check fails once, with known counts."""
    train = clean_rows("train", 54, labels=(0, 1))  # no 'neutral' in train: its share is 0
    train += [(None, 0), ("", 1), ("   \t", 0), (LONG, 1)]  # 1 null, 2 empty/whitespace, 1 too long
    train += [(train[0][0], 0)] * 4  # 4 duplicate texts of 61 non-null: 0.066 > 0.05
    validation = clean_rows("val", 8) + [(train[1][0], 1), (train[2][0], 0)]  # 2 texts leaked from train
    test = clean_rows("test", 9) + [("a review whose label is unknown", -1)]  # 1 label outside the set
    return DatasetDict(train=dataset(train), validation=dataset(validation), test=dataset(test))


def row_level_splits() -> DatasetDict:
    """Only row-level problems: quarantine can drop them and the rest passes."""
    train = clean_rows("train", 60)
    long_leak = LONG + train[4][0]
    train += [("", 0), (LONG, 1), (None, 2), (long_leak, 0)]  # rows 60..63: empty, too long, null, too long
    validation = clean_rows("val", 10) + [(train[3][0], 0), (long_leak, 1)]  # row 11: too long and leaked
    test = clean_rows("test", 10) + [("unknown label here", -1)]
    return DatasetDict(train=dataset(train), validation=dataset(validation), test=dataset(test))


def failed(report: ValidationReport) -> dict[tuple[str, str], int]:
    return {(c.split, c.check): c.failed_count for c in report.failures}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[ValidationReport, Path]:
    out = tmp_path_factory.mktemp("dirty")
    report, kept = run_gate(dirty_splits(), ValidateConfig(**CFG), out)
    assert {k: len(v) for k, v in kept.items()} == {"train": 62, "validation": 10, "test": 10}  # fail mode drops none
    return report, out


def test_each_failed_expectation_is_detected_with_its_count(dirty):
    report, _ = dirty
    assert not report.passed
    assert failed(report) == {
        ("train", "text_not_null"): 1,
        ("train", "text_not_empty"): 2,
        ("train", "text_length"): 1,
        ("train", "duplicate_rate"): 4,
        ("train", "min_class_share"): 0,  # 'neutral' has 0 rows
        ("validation", "not_in_train"): 2,
        ("test", "label_in_set"): 1,
    }
    share = next(c for c in report.failures if c.check == "min_class_share")
    assert "'neutral': 0 of 62 rows" in share.detail and share.expectation == "expect_column_values_to_be_in_set"
    # the classes that are there pass, and so do the checks that hold on every split
    assert sum(c.check == "min_class_share" and c.passed for c in report.checks) == 2
    assert all(c.passed for c in report.checks if c.check in ("column_present", "rows_present", "min_rows"))


def test_failure_message_names_expectation_count_and_examples(dirty):
    report, _ = dirty
    message = report.message()
    assert "\n" not in message
    assert "train: text_not_empty (expect_column_values_to_be_between on text_stripped_chars): 2 of 62 rows" in message
    assert "e.g. '', '   \\t'" in message
    assert "train: text_length (expect_column_value_lengths_to_be_between on text): 1 of 59 rows" in message
    assert "(380 chars)" in message
    assert "validation: not_in_train (expect_column_values_to_be_in_set on in_train): 2 of 10 rows" in message
    assert "'train review number 1 says something'" in message
    assert "test: label_in_set" in message and "'<id -1>' (row 9)" in message
    assert "4 duplicate texts" in message and "'train review number 0 says something'" in message
    assert "validate.mode=quarantine" in message


def test_data_docs_and_summary_are_written(dirty):
    report, out = dirty
    docs = Path(report.docs_path)
    assert docs == out / "data_docs" / "index.html" and docs.is_file()
    pages = sorted((out / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == 4  # train, validation, test, dataset
    train_page = next(p for p in pages if "train" in p.parts).read_text()
    assert "text_stripped_chars" in train_page and "Failed" in train_page
    loaded = ValidationReport.load(out / "validation.json")
    assert loaded == report and json.loads((out / "validation.json").read_text())["passed"] is False
    assert "| train | text_not_empty |" in report.markdown()


def test_real_rows_pass_through_the_stage(tmp_path, rows_csv):
    cfg = build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "data": {"source": str(rows_csv), "seed": 1},
            "validate": {"max_duplicate_rate": 0.2},
        }
    )
    raw = stages.ingest(cfg, tmp_path)
    data = stages.split(cfg, raw, tmp_path)
    validated = stages.validate(cfg, data, tmp_path)
    kept, report = validated.data, validated.report
    assert report.passed, report.message()
    # nothing dropped: the same rows, in the folder the next stage reads (the DVC and Prefect paths alike)
    assert kept.path == str(tmp_path / "validated") and kept.fingerprint == data.fingerprint
    assert kept.rows == data.rows and kept.labels == data.labels
    before, after = load_from_disk(data.path), load_from_disk(kept.path)
    assert {k: content_digest(v) for k, v in after.items()} == {k: content_digest(v) for k, v in before.items()}
    assert not (tmp_path / "validated.partial").exists() and not (tmp_path / "validation" / "quarantine.csv").exists()
    assert len(report.checks) == 8 + 2 + 9 + 9 + 2  # per split; train's 2 class shares; leakage; dataset
    assert {c.split for c in report.checks} == {"train", "validation", "test", "all"}


def test_quarantine_drops_exactly_the_bad_rows_and_passes(tmp_path):
    splits = row_level_splits()
    splits.save_to_disk(str(tmp_path / "splits"))
    cfg = build_config({"validate": {**CFG, "mode": "quarantine"}})
    data = stages.DataRef(str(tmp_path / "splits"), "input", {}, ["neg", "pos", "neutral"])
    validated = stages.validate(cfg, data, tmp_path)
    kept, report = validated.data, validated.report
    assert report.passed, report.message()
    quarantine = pd.read_csv(report.quarantine_path, keep_default_na=False)
    assert report.quarantine_path == str(tmp_path / "validation" / "quarantine.csv")
    got = {(r.split, r.row): r.reason for r in quarantine.itertuples()}
    assert got == {
        ("train", 60): "text_not_empty",
        ("train", 61): "text_length",
        ("train", 62): "text_not_null",
        ("train", 63): "text_length",
        ("validation", 10): "not_in_train",
        ("validation", 11): "text_length; not_in_train",
        ("test", 10): "label_in_set",
    }
    assert report.quarantined == 7 and report.quarantined_by["text_length"] == 2
    assert quarantine.loc[quarantine["row"].eq(10) & quarantine["split"].eq("test"), "label"].item() == "<id -1>"
    assert kept.path == str(tmp_path / "validated") and kept.fingerprint != "input"
    saved = load_from_disk(kept.path)
    assert kept.rows == {"train": 60, "validation": 10, "test": 10} == {k: len(v) for k, v in saved.items()}
    assert list(saved["train"]["text"]) == list(splits["train"]["text"])[:60]
    assert saved["train"].features == FEATURES


def test_quarantine_still_fails_on_split_level_problems(tmp_path):
    cfg = build_config({"validate": {**CFG, "mode": "quarantine"}})
    dirty_splits().save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(ValidationFailed) as info:
        stages.validate(cfg, stages.DataRef.of_splits(tmp_path / "splits"), tmp_path)
    message = str(info.value)
    assert info.value.report is not None and not info.value.report.passed  # for the Prefect artifact
    assert not (tmp_path / "validated").exists()  # nothing to train on is written
    assert "even after quarantining 7 row(s)" in message
    assert "train: duplicate_rate" in message and "train: min_class_share" in message
    assert "text_not_empty" not in message  # those rows are gone
    assert (tmp_path / "validation" / "quarantine.csv").is_file() and not (tmp_path / "validated").exists()
