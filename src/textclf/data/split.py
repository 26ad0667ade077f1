"""Stratified, seeded train / validation / test split, optionally keeping groups together."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict
from sklearn.model_selection import StratifiedGroupKFold

from textclf.errors import DataError


def _stratified_indices(labels: np.ndarray, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(idx) * test))
        n_val = int(round(len(idx) * val))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def _first_group_fold(labels: np.ndarray, groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Indices of one fold of about `share` of the rows, whole groups only, class-balanced."""
    n_splits = max(2, int(round(1 / share)))
    if len(np.unique(groups)) < n_splits:
        raise DataError(
            f"data.group_column: only {len(np.unique(groups))} groups, too few to hold out "
            f"{share:.0%}; use more groups or unset data.group_column"
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

    `grouped`: whole groups (the `group` column) go to one side, folds balanced by class.
    """
    labels = np.asarray(dataset["label"])
    counts = np.bincount(labels, minlength=dataset.features["label"].num_classes)
    too_small = [dataset.features["label"].int2str(i) for i, c in enumerate(counts) if 0 < c < 3]
    if too_small:
        raise DataError(f"class(es) {too_small} have fewer than 3 rows, too few for train/validation/test; add rows")
    if grouped:
        if "group" not in dataset.column_names:
            raise DataError(
                "grouped split: the dataset has no group column; set data.group_column to the "
                "column naming each row's group (e.g. movie_name)"
            )
        groups = np.asarray(dataset["group"])
        train_idx, val_idx, test_idx = _grouped_indices(labels, groups, val_fraction, test_fraction, seed)
    else:
        train_idx, val_idx, test_idx = _stratified_indices(labels, val_fraction, test_fraction, seed)
    return DatasetDict(train=dataset.select(train_idx), validation=dataset.select(val_idx), test=dataset.select(test_idx))
