"""Per-text descriptors (length, tokenizer fit, script, emptiness, duplication) and their reference-vs-drop tests.

The descriptors say how a drop's texts look to the model before any prediction: longer texts, words the tokenizer
does not know or shreds into many pieces, another script, empty rows or repeated rows. `describe_texts` computes
them per text with batched tokenizer calls; `compare_descriptors` tests each one (KS for the numeric ones, a test of
two proportions for the flags) against the reference with a Bonferroni-corrected p-value bound and an effect bound.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

from textclf.data.dedup import normalize_text
from textclf.monitor.result import TwoSampleTest
from textclf.monitor.stats import ks_test, share_test

DESCRIPTORS: tuple[str, ...] = (
    "length_chars",
    "length_words",
    "unknown_token_share",
    "many_piece_word_share",
    "non_latin_share",
    "empty",
    "duplicate",
)
FLAGS = frozenset({"empty", "duplicate"})  # booleans: share_test; the rest are numbers: ks_test


def _non_latin_share(text: str, latin: dict[str, bool]) -> float:
    """Share of the text's letters (str.isalpha) whose Unicode name does not start with "LATIN"; 0 with no letters."""
    if text.isascii():  # every ASCII letter is Latin: the common case needs no per-character look-up
        return 0.0
    letters = other = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            is_latin = latin.get(ch)
            if is_latin is None:
                is_latin = latin[ch] = unicodedata.name(ch, "").startswith("LATIN")
            other += not is_latin
    return other / letters if letters else 0.0


def describe_texts(texts: list[str], tokenizer: Any, many_pieces: int = 3) -> dict[str, np.ndarray]:
    """Each descriptor in `DESCRIPTORS` as one array over `texts` (float, int or bool).

    - length_chars, length_words: characters, and whitespace-separated words (str.split).
    - unknown_token_share: share of the text's tokens (no special tokens) that are the tokenizer's unk token; 0 for a
      text with no tokens, or a tokenizer without an unk token (byte-level BPE never needs one).
    - many_piece_word_share: share of the text's words the tokenizer splits into more than `many_pieces` pieces
      (punctuation attached to a word counts as pieces of it); 0 with no words. Each distinct word is tokenized once,
      all of them in one batched call.
    - non_latin_share: share of the alphabetic characters that are not Latin script; 0 with no letters.
    - empty: nothing but whitespace.
    - duplicate: the text's `normalize_text` form appeared earlier in `texts`. Empty texts are never duplicates
      (they have no key, as in the data gate; `empty` counts them).
    Tokenization uses the Hugging Face tokenizer's batched call (a fast, Rust tokenizer is what makes it quick).
    """
    n = len(texts)
    out: dict[str, np.ndarray] = {
        "length_chars": np.fromiter((len(t) for t in texts), dtype=np.int64, count=n),
        "length_words": np.zeros(n, dtype=np.int64),
        "unknown_token_share": np.zeros(n, dtype=np.float64),
        "many_piece_word_share": np.zeros(n, dtype=np.float64),
        "non_latin_share": np.zeros(n, dtype=np.float64),
        "empty": np.zeros(n, dtype=bool),
        "duplicate": np.zeros(n, dtype=bool),
    }
    if n == 0:
        return out

    unk = tokenizer.unk_token_id
    if unk is not None:
        ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]  # no "longer than max" warning
        out["unknown_token_share"] = np.fromiter(
            (row.count(unk) / len(row) if row else 0.0 for row in ids), dtype=np.float64, count=n
        )

    words = [t.split() for t in texts]
    out["length_words"] = np.fromiter((len(w) for w in words), dtype=np.int64, count=n)
    distinct = list(dict.fromkeys(w for row in words for w in row))  # first-seen order: deterministic batches
    if distinct:
        pieces = tokenizer(distinct, add_special_tokens=False, verbose=False)["input_ids"]
        many = {w: len(p) > many_pieces for w, p in zip(distinct, pieces, strict=True)}
        out["many_piece_word_share"] = np.fromiter(
            (sum(many[w] for w in row) / len(row) if row else 0.0 for row in words), dtype=np.float64, count=n
        )

    latin: dict[str, bool] = {}
    out["non_latin_share"] = np.fromiter((_non_latin_share(t, latin) for t in texts), dtype=np.float64, count=n)

    seen: set[str] = set()
    for i, text in enumerate(texts):
        if not text.strip():
            out["empty"][i] = True
            continue
        key = normalize_text(text)
        if key in seen:
            out["duplicate"][i] = True
        else:
            seen.add(key)
    return out


def compare_descriptors(
    reference: dict[str, np.ndarray], current: dict[str, np.ndarray], p_value: float, min_effect: float
) -> list[TwoSampleTest]:
    """One test per descriptor, in `DESCRIPTORS` order: KS for the numbers, a test of two proportions for the flags.

    A descriptor drifts when its p-value is under `p_value / len(DESCRIPTORS)` (Bonferroni: seven tests at once would
    otherwise cross a plain bound by chance far more often than `p_value`) and its effect (KS D, or the absolute
    difference of the shares) is at least `min_effect`, so that a large drop does not flag a negligible shift.
    """
    bound = p_value / len(DESCRIPTORS)
    tests: list[TwoSampleTest] = []
    for name in DESCRIPTORS:
        test = share_test if name in FLAGS else ks_test
        result = test(name, reference[name], current[name])
        result.drifted = bool(result.p_value < bound and result.effect >= min_effect)
        tests.append(result)
    return tests
