"""The GX data gate on real datasets: what passes, what each failed expectation reports, quarantine."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets, load_from_disk

from textclf import stages
from textclf.config import ValidateConfig, build_config
from textclf.data.dedup import text_keys
from textclf.data.sources import content_digest
from textclf.data.split import stratified_group_indices
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
    # row 11: too long, leaked, and labelled 1 where train's copy (row 63) says 0: both copies conflict
    validation = clean_rows("val", 10) + [(train[3][0], 0), (long_leak, 1)]
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
    assert len(report.checks) == 9 + 2 + 10 + 10 + 2  # per split; train's 2 class shares; leakage; dataset
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
        ("train", 63): "text_length; conflicting_labels",
        ("validation", 10): "not_in_train",
        ("validation", 11): "text_length; not_in_train; conflicting_labels",
        ("test", 10): "label_in_set",
    }
    assert report.quarantined == 7 and report.quarantined_by["text_length"] == 1
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


def test_duplicates_and_leakage_compare_normalised_texts(tmp_path):
    train = clean_rows("train", 40)
    train += [(train[0][0].upper(), 0), (f"  {train[3][0]}\t", 0)]  # 2 copies of 42 = 0.048 <= 0.05
    validation = clean_rows("val", 10) + [(" TRAIN review  number 1 SAYS something ", 1)]
    test = clean_rows("test", 10) + [(unicodedata.normalize("NFD", "Un café, train review number 2 says something"), 2)]
    train.append(("un CAFÉ, train review number 2 says something", 2))  # test's row, composed and upper-case
    splits = DatasetDict(train=dataset(train), validation=dataset(validation), test=dataset(test))
    report, _ = run_gate(splits, ValidateConfig(**{**CFG, "max_duplicate_rate": 0.04}), tmp_path)
    assert failed(report) == {("train", "duplicate_rate"): 2, ("validation", "not_in_train"): 1, ("test", "not_in_train"): 1}
    assert report.duplicates.groups == 4 and report.duplicates.cross_split_groups == 2


CORPUS_ROWS, COPY_SHARE, CONFLICT_SHARE = 4000, 0.03, 0.003
VARIANTS = (
    str.upper,
    lambda t: f"  {t}\n",
    lambda t: t.replace(" ", " \t "),
    lambda t: unicodedata.normalize("NFD", t.casefold()),
)


def corpus_csv(dest: Path, conflicts: bool, real_rows, seed: int = 0) -> Path:
    """4000 real rows + case/whitespace/Unicode variants of 3% of them (+ 0.3% copies with the other label)."""
    frame = pd.read_csv(real_rows(dest.with_name("base.csv"), CORPUS_ROWS, seed))
    assert not pd.Series(text_keys(frame["text"]).to_pylist()).duplicated().any()  # the copies below are the only ones
    picked = np.random.default_rng(seed).permutation(len(frame))
    n_copies, n_flips = round(CORPUS_ROWS * COPY_SHARE), round(CORPUS_ROWS * CONFLICT_SHARE)
    copies = frame.iloc[picked[:n_copies]]
    copies = copies.assign(text=[VARIANTS[i % len(VARIANTS)](t) for i, t in enumerate(copies["text"])])
    parts = [frame, copies]
    if conflicts:
        flips = frame.iloc[picked[n_copies : n_copies + n_flips]]
        other = {"positive": "negative", "negative": "positive"}
        parts.append(flips.assign(label=flips["label"].map(other), text=flips["text"].str.upper()))
    pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed).to_csv(dest, index=False)
    return dest


def corpus_splits(tmp_path: Path, conflicts: bool, real_rows, **validate) -> tuple[stages.DataRef, object]:
    """The corpus through the real ingest and split stages, under the default gate (or `validate`)."""
    source = corpus_csv(tmp_path / "corpus.csv", conflicts, real_rows)
    cfg = build_config({"output_dir": str(tmp_path / "o"), "data": {"source": str(source)}, "validate": validate})
    return stages.split(cfg, stages.ingest(cfg, tmp_path), tmp_path), cfg


@pytest.fixture(scope="module")
def conflicted(tmp_path_factory, real_rows) -> tuple[ValidationReport, DatasetDict]:
    out = tmp_path_factory.mktemp("conflicted")
    data, cfg = corpus_splits(out, True, real_rows)
    splits = load_from_disk(data.path)
    report, _ = run_gate(splits, cfg.validate_, out / "validation")
    return report, splits


def test_duplicate_corpus_fails_the_default_gate_only_on_conflicting_labels(conflicted):
    report, splits = conflicted
    n_flips = round(CORPUS_ROWS * CONFLICT_SHARE)
    assert {c.check for c in report.failures} == {"conflicting_labels"}, report.message()
    counted = [c for c in report.checks if c.check == "conflicting_labels"]
    assert sum(c.failed_count for c in counted) == 2 * n_flips  # both copies of each relabelled text
    message = report.message()
    assert ": conflicting_labels (expect_column_values_to_be_in_set on label_conflict)" in message
    assert "labelled 'negative', 'positive' (rows " in message
    # the report counts the duplicate groups and says they stayed within one split
    dups = report.duplicates
    n_copies = round(CORPUS_ROWS * COPY_SHARE)
    assert (dups.groups, dups.rows, dups.cross_split_groups) == (n_copies + n_flips, 2 * (n_copies + n_flips), 0)
    assert (dups.conflicting_groups, dups.conflicting_rows) == (n_flips, 2 * n_flips)
    assert f"{n_copies + n_flips} group(s), {2 * (n_copies + n_flips)} rows; each group is kept within one split" in (
        report.markdown()
    )
    assert ValidationReport.load(Path(report.summary_path)).duplicates == dups


def test_duplicate_corpus_without_conflicts_passes_the_default_gate(tmp_path, real_rows):
    data, cfg = corpus_splits(tmp_path, False, real_rows)
    validated = stages.validate(cfg, data, tmp_path)
    assert validated.report.passed, validated.report.message()
    assert validated.report.duplicates.groups == round(CORPUS_ROWS * COPY_SHARE)
    assert all(c.failed_count == 0 for c in validated.report.checks if c.check in ("not_in_train", "conflicting_labels"))


def test_the_row_level_split_of_that_corpus_fails_on_leakage(tmp_path, real_rows):
    """What the split did before it grouped copies: the same corpus, one row per group, leaks."""
    data, cfg = corpus_splits(tmp_path, False, real_rows)
    splits = load_from_disk(data.path)
    whole = concatenate_datasets(list(splits.values()))
    labels = np.asarray(whole["label"])
    sides = stratified_group_indices(labels, np.arange(len(labels)), 0.1, 0.1, cfg.data.seed)
    row_level = DatasetDict({s: whole.select(i) for s, i in zip(splits, sides, strict=True)})
    report, _ = run_gate(row_level, cfg.validate_, tmp_path / "row_level")
    assert {(c.split, c.check) for c in report.failures} == {("validation", "not_in_train"), ("test", "not_in_train")}
    assert report.duplicates.cross_split_groups > 10
    assert "span more than one split" in report.markdown()


def test_quarantine_drops_every_copy_of_a_conflicting_text(tmp_path, conflicted):
    _, splits = conflicted
    splits.save_to_disk(str(tmp_path / "splits"))
    cfg = build_config({"validate": {"mode": "quarantine"}})
    validated = stages.validate(cfg, stages.DataRef.of_splits(tmp_path / "splits"), tmp_path)
    report, kept = validated.report, load_from_disk(validated.data.path)
    n_flips = round(CORPUS_ROWS * CONFLICT_SHARE)
    assert report.passed, report.message()
    assert report.quarantined == 2 * n_flips and report.quarantined_by == {"conflicting_labels": 2 * n_flips}
    quarantine = pd.read_csv(report.quarantine_path)
    assert (pd.Series(text_keys(quarantine["text"]).to_pylist()).value_counts() == 2).all()  # pairs: both copies went
    kept_keys = {k for part in kept.values() for k in text_keys(part["text"]).to_pylist()}
    assert kept_keys.isdisjoint(text_keys(quarantine["text"]).to_pylist())
    assert sum(len(p) for p in kept.values()) == sum(len(p) for p in splits.values()) - 2 * n_flips


def test_quarantine_drops_the_copy_of_a_conflict_even_where_its_split_is_within_the_bound(tmp_path):
    train = clean_rows("train", 60) + [("the same words, two labels", 0)]  # 1 of 61 conflicting: within 2%
    validation = clean_rows("val", 10) + [("The same  words, TWO labels", 1)]  # 1 of 11: over 2%
    splits = DatasetDict(train=dataset(train), validation=dataset(validation), test=dataset(clean_rows("test", 10)))
    cfg = ValidateConfig(**{**CFG, "max_conflicting_label_rate": 0.02, "mode": "quarantine"})
    report, kept = run_gate(splits, cfg, tmp_path)
    assert report.passed, report.message()
    quarantine = pd.read_csv(report.quarantine_path)
    got = {(r.split, r.row): r.reason for r in quarantine.itertuples()}
    assert got == {("train", 60): "conflicting_labels", ("validation", 10): "not_in_train; conflicting_labels"}
    assert (len(kept["train"]), len(kept["validation"])) == (60, 10)
    assert report.duplicates.conflicting_groups == 1 and report.duplicates.cross_split_groups == 1


def test_three_classes_with_agreeing_and_conflicting_copies(tmp_path):
    """Real fresh / rotten / plot rows (the corpus's three categories): agreeing copies stay on one side,
    a text labelled two ways is reported with its labels, quarantine drops every copy of it."""
    from textclf.settings import packaged_corpus_path

    corpus = pd.read_csv(packaged_corpus_path())[["text", "category"]].drop_duplicates("text")
    frame = pd.concat([g.sample(200, random_state=1) for _, g in corpus.groupby("category")], ignore_index=True)
    agreeing = frame.sample(30, random_state=2).assign(text=lambda f: f["text"].str.upper())
    relabel = {"fresh": "plot", "rotten": "fresh", "plot": "rotten"}
    conflicting = frame.drop(agreeing.index).sample(3, random_state=3)
    conflicting = conflicting.assign(category=conflicting["category"].map(relabel), text=conflicting["text"] + "  ")
    source = tmp_path / "three.csv"
    pd.concat([frame, agreeing, conflicting]).sample(frac=1, random_state=4).to_csv(source, index=False)
    cfg = build_config({"data": {"source": str(source), "label_column": "category"}, "validate": {"mode": "quarantine"}})
    data = stages.split(cfg, stages.ingest(cfg, tmp_path), tmp_path)
    assert data.labels == ["fresh", "plot", "rotten"]
    splits = load_from_disk(data.path)
    sides: dict[str, set[str]] = {}
    for name, part in splits.items():
        for key in text_keys(part["text"]).to_pylist():
            sides.setdefault(key, set()).add(name)
    assert all(len(s) == 1 for s in sides.values())  # every copy, agreeing or not, on one side

    validated = stages.validate(cfg, data, tmp_path)
    report = validated.report
    assert report.duplicates.groups == 33 and report.duplicates.conflicting_groups == 3
    assert report.quarantined_by == {"conflicting_labels": 6}  # both copies of each of the three texts
    kept = concatenate_datasets(list(load_from_disk(validated.data.path).values()))
    gone = set(text_keys(pd.Series(conflicting["text"])).to_pylist())
    assert not gone & set(text_keys(kept["text"]).to_pylist()) and len(kept) == 600 + 30 + 3 - 6
    failing = build_config({**cfg.to_dict(), "validate": {"mode": "fail"}})
    with pytest.raises(ValidationFailed, match="conflicting_labels") as err:
        stages.validate(failing, data, tmp_path / "fail")
    assert "labelled 'fresh', 'plot'" in str(err.value) or "labelled 'fresh', 'rotten'" in str(err.value)
