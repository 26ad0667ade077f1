"""Stratified, seeded train / validation / test split; copies of one text, and groups, stay on one side.

Rows whose texts are the same once normalised (`textclf.data.dedup`) form a duplicate group, and a
duplicate group never straddles two sides: otherwise the data gate (rightly) sees the copies in
validation/test as leaked from train. With `grouped`, the unit kept together is the connected
component of "shares a group or a text" (union-find over (group, normalised text)): a text found
in two groups pulls both groups onto one side.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict
from sklearn.model_selection import StratifiedGroupKFold

from textclf.data.dedup import duplicate_codes, joined_groups, text_keys
from textclf.errors import DataError


def _group_labels(labels: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's majority label (ties: the smallest label id); one pass, no loop over groups."""
    pairs, counts = np.unique(groups * (int(labels.max()) + 1) + labels, return_counts=True)
    pair_group, pair_label = np.divmod(pairs, int(labels.max()) + 1)
    # np.unique sorts by (group, label): sorting stably by count keeps the smallest label first on ties.
    order = np.lexsort((pair_label, -counts, pair_group))
    first = np.unique(pair_group[order], return_index=True)[1]
    out = np.empty(n_groups, dtype=labels.dtype)
    out[pair_group[order][first]] = pair_label[order][first]
    return out


def _cut(sizes: np.ndarray, target: int) -> int:
    """How many of the leading groups (of `sizes` rows each) come closest to `target` rows."""
    cumulative = np.concatenate([[0], np.cumsum(sizes)])
    at = int(np.searchsorted(cumulative, target))
    if at >= len(cumulative):
        return len(cumulative) - 1
    return at if at == 0 or cumulative[at] - target <= target - cumulative[at - 1] else at - 1


def stratified_group_indices(
    labels: np.ndarray, groups: np.ndarray, val: float, test: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test row indices, whole groups only, each class's rows in the requested shares.

    `groups` are ints numbered by first appearance (0..k-1). Per class (a group's majority label),
    groups are shuffled and the leading ones taken until test, then test + validation, are closest
    to their share of that class's rows. With one row per group this is exactly the row-level
    stratified split (same seed, same rows).
    """
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=n_groups)
    group_label = _group_labels(labels, groups, n_groups)
    side = np.zeros(n_groups, dtype=np.int8)  # 0 train, 1 validation, 2 test
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(group_label == cls))
        n_rows = int(sizes[members].sum())
        n_test = _cut(sizes[members], int(round(n_rows * test)))
        n_held = _cut(sizes[members], int(round(n_rows * test)) + int(round(n_rows * val)))
        side[members[:n_test]] = 2
        side[members[n_test : max(n_held, n_test)]] = 1
    row_side = side[groups]
    return tuple(np.flatnonzero(row_side == k) for k in range(3))  # type: ignore[return-value]


def _first_group_fold(labels: np.ndarray, groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Indices of one fold of about `share` of the rows, whole groups only, class-balanced."""
    n_splits = max(2, int(round(1 / share)))
    if len(np.unique(groups)) < n_splits:
        raise DataError(
            f"data.group_column: only {len(np.unique(groups))} groups (counting groups that share a text as one), "
            f"too few to hold out {share:.0%}; use more groups or unset data.group_column"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held_out = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(held_out)


def _grouped_indices(labels: np.ndarray, groups: np.ndarray, val: float, test: float, seed: int):
    all_idx = np.arange(len(labels))
    test_idx = _first_group_fold(labels, groups, test, seed)
    rest = np.setdiff1d(all_idx, test_idx)
    val_local = _first_group_fold(labels[rest], groups[rest], val / (1 - test), seed + 1)
    val_idx = rest[val_local]
    train_idx = np.setdiff1d(rest, val_idx)
    return train_idx, val_idx, test_idx


def split_stratified(
    dataset: Dataset, val_fraction: float, test_fraction: float, seed: int, grouped: bool = False
) -> DatasetDict:
    """Same input and seed -> the same rows in the same order on each side (byte-identical when saved).

    Rows with the same normalised text go to one side. `grouped`: so do whole groups (the `group`
    column) and every group sharing a text with them; folds balanced by class.
    """
    # One Arrow read: `dataset[column]` is a lazy column that costs seconds per million rows to iterate.
    columns = [c for c in ("text", "label", "group") if c in dataset.column_names]
    table = dataset.select_columns(columns).with_format("arrow")[:]
    labels = table.column("label").to_numpy()
    counts = np.bincount(labels, minlength=dataset.features["label"].num_classes)
    too_small = [dataset.features["label"].int2str(i) for i, c in enumerate(counts) if 0 < c < 3]
    if too_small:
        raise DataError(f"class(es) {too_small} have fewer than 3 rows, too few for train/validation/test; add rows")
    codes = duplicate_codes(text_keys(table.column("text")))
    if grouped:
        if "group" not in dataset.column_names:
            raise DataError(
                "grouped split: the dataset has no group column; set data.group_column to the "
                "column naming each row's group (e.g. movie_name)"
            )
        groups = joined_groups(table.column("group").to_numpy(zero_copy_only=False), codes)
        train_idx, val_idx, test_idx = _grouped_indices(labels, groups, val_fraction, test_fraction, seed)
    else:
        train_idx, val_idx, test_idx = stratified_group_indices(labels, codes, val_fraction, test_fraction, seed)
    return DatasetDict(train=dataset.select(train_idx), validation=dataset.select(val_idx), test=dataset.select(test_idx))
