"""The data gate's Great Expectations suites, built from `ValidateConfig`, and the columns they read.

Checks GX cannot state on the raw columns are computed here, vectorised, as plain columns
(`text_stripped_chars`, `label_name`, `text_key`, `in_train`, `label_conflict`) so that GX still
evaluates every check. Duplicates, leakage and label conflicts compare `text_key`, the text as
`textclf.data.dedup` normalises it (the split uses the same key to keep copies on one side).
Each expectation carries `meta.check`: the gate's name for it (`text_not_empty`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from textclf.config import ValidateConfig
from textclf.data.dedup import DuplicateSummary, compare_texts, text_keys

TEXT = "text"
LABEL = "label"
STRIPPED = "text_stripped_chars"  # characters once surrounding whitespace is removed; NaN for a null text
LABEL_NAME = "label_name"  # the label as a name; "<id N>" / "<missing>" when it is not a known class
KEY = "text_key"  # the normalised text (textclf.data.dedup); null for a null or blank text
IN_TRAIN = "in_train"  # validation/test only: the same (normalised) text is also in train
CONFLICT = "label_conflict"  # the same normalised text has another label somewhere in the dataset
SPLITS = ("train", "validation", "test")
CONFLICTING = "conflicting_labels"

# Checks whose failing rows quarantine mode may drop; the others describe a whole split.
ROW_LEVEL = ("text_not_null", "text_not_empty", "text_length", "label_in_set", "not_in_train", CONFLICTING)


@dataclass
class SplitTexts:
    """One split's texts as the dataset-wide checks see them; row-aligned with the split's frame."""

    key: pa.Array  # normalised text (large_string), null where null or blank
    conflicting: np.ndarray  # bool: the key occurs, in any split, with another label


def split_texts(frames: Mapping[str, pd.DataFrame]) -> tuple[dict[str, SplitTexts], DuplicateSummary]:
    """Normalise every split's texts once; mark label conflicts and count duplicates over all splits together."""
    keys = {s: text_keys(f[TEXT]) if TEXT in f else pa.nulls(len(f), pa.large_string()) for s, f in frames.items()}
    labels = {s: f[LABEL] if LABEL in f else pd.Series([None] * len(f), dtype=object) for s, f in frames.items()}
    compared = compare_texts(keys, labels)
    return {s: SplitTexts(keys[s], compared.conflicting[s]) for s in frames}, compared.summary


def add_computed_columns(
    frame: pd.DataFrame,
    class_names: list[str] | None,
    texts: SplitTexts | None = None,
    train_keys: pa.Array | None = None,
) -> pd.DataFrame:
    """The split's own columns plus the computed ones (vectorised; no Python loop over rows).

    `texts` (from `split_texts`) adds the key and conflict columns; `train_keys` (validation/test) the leakage one.
    """
    out = pd.DataFrame(index=frame.index)
    if TEXT in frame:
        out[TEXT] = frame[TEXT]
        stripped = frame[TEXT].str.strip().str.len()
        out[STRIPPED] = stripped.astype("float64")
        if texts is not None:
            out[KEY] = texts.key.to_pandas().set_axis(frame.index)
            if train_keys is not None:
                # a null key (null or blank text) is never "in train": text_not_null / text_not_empty report it
                found = pc.is_in(texts.key, value_set=train_keys, skip_nulls=True).fill_null(False)
                out[IN_TRAIN] = found.to_numpy(zero_copy_only=False) & texts.key.is_valid().to_numpy(zero_copy_only=False)
    if texts is not None and LABEL in frame:
        out[CONFLICT] = texts.conflicting
    if LABEL in frame:
        out[LABEL] = frame[LABEL]
        out[LABEL_NAME] = label_names(frame[LABEL], class_names)
    return out


def label_names(labels: pd.Series, class_names: list[str] | None) -> pd.Series:
    """ClassLabel ids -> names; ids outside the ClassLabel become '<id N>', nulls '<missing>'."""
    if class_names is None:
        return labels.astype(object).where(labels.notna(), "<missing>").astype(str)
    codes = pd.to_numeric(labels, errors="coerce").to_numpy(dtype="float64")
    known = ~np.isnan(codes) & (codes >= 0) & (codes < len(class_names)) & (codes == np.round(codes))
    table = np.asarray(list(class_names), dtype=object)
    names = table[np.where(known, codes, 0).astype(np.int64)]
    if not known.all():
        bad = np.flatnonzero(~known)
        names[bad] = ["<missing>" if np.isnan(codes[i]) else f"<id {labels.iloc[i]}>" for i in bad]
    return pd.Series(names, index=labels.index, dtype="str")


def _meta(check: str, what: str) -> dict:
    return {"meta": {"check": check}, "description": what}


def build_split_suite(split: str, cfg: ValidateConfig, declared: list[str], name: str | None = None):
    """The expectations one split must meet; train adds class shares, validation/test add leakage."""
    import great_expectations as gx  # ~6 s to import: only when a gate runs
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    suite = gx.ExpectationSuite(name=name or f"textclf.{split}")
    for column in (TEXT, LABEL):
        suite.add_expectation(gxe.ExpectColumnToExist(column=column, **_meta("column_present", f"column `{column}` is present")))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1, **_meta("rows_present", "the split has rows")))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=TEXT, **_meta("text_not_null", "text is not null")))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column=STRIPPED, min_value=1, **_meta("text_not_empty", "text is not empty or whitespace-only")
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=TEXT,
            min_value=cfg.min_text_chars,
            max_value=cfg.max_text_chars,
            row_condition=Column(STRIPPED) > 0,
            **_meta("text_length", f"non-empty text has {cfg.min_text_chars}..{cfg.max_text_chars} characters"),
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(
            column=LABEL_NAME, value_set=list(declared), **_meta("label_in_set", "label is a declared class")
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=KEY,
            min_value=1 - cfg.max_duplicate_rate,
            **_meta("duplicate_rate", f"at most {cfg.max_duplicate_rate:.1%} of (normalised) texts are duplicates"),
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(
            column=CONFLICT,
            value_set=[False],
            mostly=1 - cfg.max_conflicting_label_rate,
            **_meta(
                CONFLICTING,
                f"at most {cfg.max_conflicting_label_rate:.1%} of rows share their (normalised) text with a row of another label",
            ),
        )
    )
    if split == "train" and cfg.min_class_share > 0:
        # "at least `mostly` of the labels are this class" is exactly a minimum class share.
        for cls in declared:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInSet(
                    column=LABEL_NAME,
                    value_set=[cls],
                    mostly=cfg.min_class_share,
                    **_meta("min_class_share", f"class `{cls}` is at least {cfg.min_class_share:.1%} of train"),
                )
            )
    if split != "train":
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(
                column=IN_TRAIN, value_set=[False], **_meta("not_in_train", "no (normalised) text also appears in train")
            )
        )
    return suite


def build_dataset_suite(cfg: ValidateConfig, name: str = "textclf.dataset"):
    """Whole-dataset expectations, run on a one-column frame naming each row's split."""
    import great_expectations as gx  # ~6 s to import: only when a gate runs
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    suite.add_expectation(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=cfg.min_rows, **_meta("min_rows", f"the dataset has at least {cfg.min_rows} rows")
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="split", value_set=list(SPLITS), **_meta("splits_present", "train, validation and test have rows")
        )
    )
    return suite


def row_level_copy(suite, failed_ids: set[str], name: str, also: frozenset[str] = frozenset()):
    """A suite holding fresh copies of the failed row-level expectations (to list every failing row),
    and of those whose check is in `also` whether they failed here or not."""
    import great_expectations as gx  # ~6 s to import: only when a gate runs

    out = gx.ExpectationSuite(name=name)
    for exp in suite.expectations:
        check = (exp.meta or {}).get("check")
        if check in ROW_LEVEL and (exp.id in failed_ids or check in also):
            out.add_expectation(exp.copy(update={"id": None}))
    return out
