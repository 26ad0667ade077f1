"""The data gate's Great Expectations suites, built from `ValidateConfig`, and the columns they read.

Checks GX cannot state on the raw columns are computed here, vectorised, as plain columns
(`text_stripped_chars`, `label_name`, `in_train`) so that GX still evaluates every check.
Each expectation carries `meta.check`: the gate's name for it (`text_not_empty`, ...).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from textclf.config import ValidateConfig

TEXT = "text"
LABEL = "label"
STRIPPED = "text_stripped_chars"  # characters once surrounding whitespace is removed; NaN for a null text
LABEL_NAME = "label_name"  # the label as a name; "<id N>" / "<missing>" when it is not a known class
IN_TRAIN = "in_train"  # validation/test only: the same text is also in train
SPLITS = ("train", "validation", "test")

# Checks whose failing rows quarantine mode may drop; the others describe a whole split.
ROW_LEVEL = ("text_not_null", "text_not_empty", "text_length", "label_in_set", "not_in_train")


def add_computed_columns(
    frame: pd.DataFrame, class_names: list[str] | None, train_texts: pd.Series | None = None
) -> pd.DataFrame:
    """The split's own columns plus the computed ones (vectorised; no Python loop over rows)."""
    out = pd.DataFrame(index=frame.index)
    if TEXT in frame:
        out[TEXT] = frame[TEXT]
        stripped = frame[TEXT].str.strip().str.len()
        out[STRIPPED] = stripped.astype("float64")
        if train_texts is not None:
            out[IN_TRAIN] = is_in(frame[TEXT], train_texts) & (stripped > 0).to_numpy()
    if LABEL in frame:
        out[LABEL] = frame[LABEL]
        out[LABEL_NAME] = label_names(frame[LABEL], class_names)
    return out


def is_in(values: pd.Series, members: pd.Series) -> np.ndarray:
    """Which `values` occur in `members`; Arrow's hash join (pandas' isin on Arrow strings is slow)."""
    found = pc.is_in(pa.array(values, from_pandas=True), value_set=pa.array(members, from_pandas=True))
    return found.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


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
            column=TEXT,
            min_value=1 - cfg.max_duplicate_rate,
            **_meta("duplicate_rate", f"at most {cfg.max_duplicate_rate:.1%} of texts are duplicates"),
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
                column=IN_TRAIN, value_set=[False], **_meta("not_in_train", "no text also appears in train")
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


def row_level_copy(suite, failed_ids: set[str], name: str):
    """A suite holding fresh copies of the failed row-level expectations (to list every failing row)."""
    import great_expectations as gx  # ~6 s to import: only when a gate runs

    out = gx.ExpectationSuite(name=name)
    for exp in suite.expectations:
        if exp.id in failed_ids and (exp.meta or {}).get("check") in ROW_LEVEL:
            out.add_expectation(exp.copy(update={"id": None}))
    return out
