"""One normaliser decides "the same text": keys, duplicate codes, group joining, conflicts, the summary."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from textclf.data.dedup import (
    DuplicateSummary,
    compare_texts,
    duplicate_codes,
    joined_groups,
    normalize_text,
    text_keys,
)


def test_normalisation_unifies_case_width_of_whitespace_and_unicode_form():
    base = "Café au lait, très BON"
    variants = [
        base.upper(),
        f"  {base}\n",
        base.replace(" ", " \t\u00a0 "),  # tabs and a no-break space collapse too
        unicodedata.normalize("NFD", base),  # 'e' + combining accent
    ]
    assert {normalize_text(v) for v in variants} == {"café au lait, très bon"}
    assert normalize_text("Straße") == normalize_text("STRASSE")  # casefold, not lower()
    # what normalisation must not merge: other words, punctuation, accents
    assert len({normalize_text(t) for t in ("good film", "good film!", "good films", "cafe", "café")}) == 5


def test_keys_leave_null_and_blank_texts_without_a_key():
    keys = text_keys(["a B", None, "  \t", "", " A  b "])
    assert keys.to_pylist() == ["a b", None, None, None, "a b"]


def test_codes_number_by_first_appearance_and_keyless_rows_stand_alone():
    keys = text_keys(["x", "y", None, "X ", None, "z", "Y"])
    assert duplicate_codes(keys).tolist() == [0, 1, 2, 0, 3, 4, 1]
    distinct = text_keys([f"text {i}" for i in range(50)])
    assert duplicate_codes(distinct).tolist() == list(range(50))  # no duplicates: one code per row


def test_groups_sharing_a_text_are_joined_transitively():
    # g1 and g2 share text 0, g2 and g3 share text 1: one component; g4 stays alone
    groups = np.array(["g1", "g2", "g2", "g3", "g4", "g1"], dtype=object)
    codes = np.array([0, 0, 1, 1, 2, 3])
    joined = joined_groups(groups, codes)
    assert joined.tolist() == [0, 0, 0, 0, 1, 0]
    # without shared texts the groups are the groups
    assert joined_groups(groups, np.arange(6)).tolist() == [0, 1, 1, 2, 3, 0]


def test_conflicts_are_texts_with_more_than_one_label_in_any_split():
    keys = {"train": text_keys(["Good", "bad", "bad", "meh"]), "test": text_keys(["good ", None, None])}
    labels = {"train": pd.Series(["pos", "neg", "neg", "pos"]), "test": pd.Series(["neg", "pos", "neg"])}
    conflicting = compare_texts(keys, labels).conflicting
    assert {s: m.tolist() for s, m in conflicting.items()} == {
        "train": [True, False, False, False],
        "test": [True, False, False],  # null texts conflict with nothing
    }
    unlabelled = {"train": pd.Series(["pos", "neg", "neg", "pos"]), "test": pd.Series([None, "pos", "neg"])}
    assert not any(m.any() for m in compare_texts(keys, unlabelled).conflicting.values())  # null: no label


def test_summary_counts_groups_rows_splits_and_conflicts():
    keys = {
        "train": text_keys(["a", "A", "a", "b", "c", "d "]),
        "validation": text_keys(["d", "e"]),
        "test": text_keys(["f", "F", None, None]),
    }
    labels = {"train": pd.Series([0, 0, 0, 1, 1, 0]), "validation": pd.Series([0, 1]), "test": pd.Series([1, 0, 0, 0])}
    summary = compare_texts(keys, labels).summary
    assert summary == DuplicateSummary(
        groups=3, rows=7, cross_split_groups=1, conflicting_groups=1, conflicting_rows=2, examples=["3 x 'a'", "2 x 'd'"]
    )
    sentence = summary.sentence()
    assert "3 group(s), 7 rows" in sentence and "1 group(s) span more than one split" in sentence
    assert "1 group(s) (2 rows) carry more than one label" in sentence
    together = compare_texts({"train": keys["train"]}, {"train": labels["train"]}).summary
    assert together.cross_split_groups == 0 and "each group is kept within one split" in together.sentence()
    alone = compare_texts({"test": text_keys(["x", None, None])}, {"test": pd.Series([0, 1, 0])})
    assert alone.summary == DuplicateSummary() and not alone.conflicting["test"].any()
    assert compare_texts({"test": text_keys([None, " "])}, {"test": pd.Series([0, 1])}).summary.groups == 0


def test_the_ascii_shortcut_gives_the_full_unicode_answer():
    """normalize_text skips NFC/casefold for ASCII texts: that must not change any key."""

    def full(text: str) -> str:
        return unicodedata.normalize("NFC", " ".join(unicodedata.normalize("NFC", text).casefold().split()))

    ascii_space = [chr(c) for c in range(128) if chr(c).isspace()]  # includes \v and \x1c..\x1f
    texts = [f"{ws}Mixed{ws}{ws}CASE and\x00nul{ws}" for ws in ascii_space] + ["".join(map(chr, range(128)))]
    assert all(t.isascii() for t in texts)
    assert [normalize_text(t) for t in texts] == [full(t) for t in texts]
    others = ["Ünïcode  ÇASE", "tab\u2003em-space\u00a0nbsp", "e\u0301", "ǰ", "ﬁne ÉTÉ", "x\x85y", "\u3000"]
    assert [normalize_text(t) for t in others] == [full(t) for t in others]
