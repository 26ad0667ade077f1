"""When two texts are "the same": one normaliser for the split and the data gate, and what follows from it.

Two texts are the same when they are equal after Unicode NFC, casefolding and collapsing every run of
whitespace to one space (stripped at both ends). The split keeps such texts on one side; the gate
counts them as duplicates, as leakage when they straddle train and validation/test, and as
conflicting when they carry different labels. A null text, or one that is empty once normalised, has
no key: it is nobody's duplicate (`text_not_null` / `text_not_empty` report it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def normalize_text(text: str) -> str:
    """NFC, casefold, whitespace runs -> one space, stripped: 'Café  GOOD\\n' and 'cafe\\u0301 good' agree."""
    if text.isascii():  # NFC changes no ASCII text and casefold is lower(): the same result, 3x faster
        return " ".join(text.lower().split())
    # casefold may decompose (e.g. 'ǰ'), so NFC once more after it: canonically equal texts get one key.
    folded = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    return unicodedata.normalize("NFC", folded)


def text_keys(texts: pa.Array | pa.ChunkedArray | pd.Series | Iterable[str | None]) -> pa.Array:
    """Each text's `normalize_text` form (Arrow large_string); null where the text is null or only whitespace."""
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        texts = texts.to_pylist()
    elif isinstance(texts, pd.Series):
        texts = texts.to_numpy(dtype=object, na_value=None)
    keys = [normalize_text(t) if isinstance(t, str) else None for t in texts]
    return pa.array([k or None for k in keys], type=pa.large_string())


def _codes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Key -> int (by first appearance), -1 for a null key; Arrow's hash table (one dictionary across chunks)."""
    encoded = pc.dictionary_encode(keys)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    parts = [c.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) for c in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _label_codes(labels: pa.Array | pd.Series | np.ndarray) -> np.ndarray:
    values = labels.to_pandas() if isinstance(labels, pa.Array) else pd.Series(labels)
    return pd.factorize(values, use_na_sentinel=True)[0].astype(np.int64)  # -1: no label


def _distinct_per_code(codes: np.ndarray, other: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per key code: how many distinct `other` values (ints >= 0) its `rows` (a mask) carry."""
    n_other = int(other.max()) + 1 if len(other) else 1
    pairs = np.unique(codes[rows] * n_other + other[rows])  # each (code, value) once
    return np.bincount(pairs // n_other, minlength=int(codes.max()) + 1)


def _conflicting_codes(codes: np.ndarray, label_codes: np.ndarray) -> np.ndarray:
    """Per key code (codes >= 0 present): True when its rows carry more than one (non-null) label."""
    counts = np.bincount(codes[codes >= 0], minlength=int(codes.max()) + 1)
    repeated = (codes >= 0) & (label_codes >= 0) & (counts[np.maximum(codes, 0)] > 1)
    return _distinct_per_code(codes, label_codes, repeated) > 1


def duplicate_codes(keys: pa.Array) -> np.ndarray:
    """An int per row, shared by rows with the same key, numbered by first appearance; a keyless row is alone.

    Without duplicates this is `arange(len(keys))`, so a split over these codes is the row-level split.
    """
    codes = _codes(keys)
    missing = codes < 0
    codes[missing] = -1 - np.flatnonzero(missing)  # a distinct code of its own per keyless row
    renumbered, _ = pd.factorize(codes)
    return renumbered.astype(np.int64)


def joined_groups(groups: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Component per row of the graph joining rows that share a group or a duplicate code (union-find).

    Group A and group B holding the same text become one component, so both groups and every copy of
    the text stay on one side; components are numbered by first appearance.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    group_ids, _ = pd.factorize(groups)
    n_groups, n_codes = int(group_ids.max()) + 1, int(codes.max()) + 1
    size = n_groups + n_codes
    # Bipartite: group node -- text node, one edge per row.
    edges = coo_matrix((np.ones(len(codes), dtype=np.int8), (group_ids, n_groups + codes)), shape=(size, size))
    _, component = connected_components(edges, directed=False)
    renumbered, _ = pd.factorize(component[group_ids])
    return renumbered.astype(np.int64)


@dataclass
class DuplicateSummary:
    """Groups of rows whose texts are the same once normalised, over all splits together."""

    groups: int = 0  # keys held by more than one row
    rows: int = 0  # rows in those groups
    cross_split_groups: int = 0  # of them, groups with rows in more than one split (leakage)
    conflicting_groups: int = 0  # of them, groups with more than one label
    conflicting_rows: int = 0
    examples: list[str] = field(default_factory=list)  # the largest groups: "<n> x '<key>'"

    def sentence(self) -> str:
        if not self.groups:
            return "No duplicate texts (compared after NFC, casefold and whitespace normalisation)."
        where = (
            "each group is kept within one split"
            if not self.cross_split_groups
            else f"{self.cross_split_groups} group(s) span more than one split (see not_in_train)"
        )
        conflicts = (
            f"; {self.conflicting_groups} group(s) ({self.conflicting_rows} rows) carry more than one label "
            "(see conflicting_labels)"
            if self.conflicting_groups
            else ""
        )
        examples = f"; largest: {', '.join(self.examples)}" if self.examples else ""
        return (
            f"Duplicate texts (same after NFC, casefold and whitespace normalisation): {self.groups} group(s), "
            f"{self.rows} rows; {where}{conflicts}{examples}."
        )


@dataclass
class TextComparison:
    """The splits' texts compared with each other, over the whole dataset."""

    conflicting: dict[str, np.ndarray]  # split -> bool per row: its key also occurs with another label
    summary: DuplicateSummary


def compare_texts(keys: Mapping[str, pa.Array], labels: Mapping[str, pd.Series], n_examples: int = 2) -> TextComparison:
    """Label conflicts per row and the duplicate groups of the splits `keys` (split -> key per row, from
    `text_keys`) with their `labels`; every split is compared with every other. Vectorised: one hash pass."""
    names = list(keys)
    every = pa.chunked_array([keys[s] for s in names], type=pa.large_string())
    codes = _codes(every)
    keyed = codes >= 0
    label_codes = _label_codes(pd.concat([labels[s] for s in names], ignore_index=True)) if names else codes
    conflict_codes = _conflicting_codes(codes, label_codes) if keyed.any() else np.zeros(0, dtype=bool)
    per_row = conflict_codes[np.maximum(codes, 0)] & keyed if keyed.any() else np.zeros(len(codes), dtype=bool)
    sizes = [len(keys[s]) for s in names]
    conflicting = dict(zip(names, np.split(per_row, np.cumsum(sizes)[:-1]), strict=True))
    rows = np.bincount(codes[keyed]) if keyed.any() else np.zeros(0, dtype=np.int64)
    dup = rows > 1
    if not dup.any():
        return TextComparison(conflicting, DuplicateSummary())
    split_ids = np.repeat(np.arange(len(names)), sizes)
    spread = _distinct_per_code(codes, split_ids, keyed) > 1
    largest = np.argsort(-rows, kind="stable")[:n_examples]
    first_row = np.flatnonzero(keyed)[np.unique(codes[keyed], return_index=True)[1]]  # codes are 0..n-1
    summary = DuplicateSummary(
        groups=int(dup.sum()),
        rows=int(rows[dup].sum()),
        cross_split_groups=int((spread & dup).sum()),
        conflicting_groups=int(conflict_codes.sum()),
        conflicting_rows=int(rows[conflict_codes].sum()),
        examples=[f"{rows[c]} x {_short(every[int(first_row[c])].as_py())}" for c in largest if dup[c]],
    )
    return TextComparison(conflicting, summary)


def _short(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}..."
