"""What goes into augmentation and what comes out of it.

`screen` skips inputs no augmenter handles well (counted, never raised). `OutputFilter` drops outputs
that add nothing: identical to the source after normalisation, outside a length band, or a duplicate
of a training text or of another augmented row. `label_consistent` keeps rows a classifier still
assigns to their label (matched by class name) with enough confidence.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: modeling imports torch, which screening never needs
    from textclf.modeling import Predictions

HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>|&[a-z]+;|&#\d+;")
PUNCT_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing removed: what makes two texts 'the same'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return PUNCT_SPACE.sub(" ", text.lower()).strip()


def latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if "LATIN" in unicodedata.name(c, "")) / len(letters)


def screen(text: object, max_words: int) -> str | None:
    """Why a source text is skipped ('empty', 'html', 'too_long', 'non_latin'), or None to keep it."""
    if not isinstance(text, str) or not text.strip():
        return "empty"
    if HTML_TAG.search(text):
        return "html"
    if len(text.split()) > max_words:
        return "too_long"
    if latin_share(text) < 0.8:
        return "non_latin"
    return None


class OutputFilter:
    """Stateful: remembers the training texts and every row it has already kept."""

    def __init__(self, train_texts: Iterable[str], min_ratio: float = 0.5, max_ratio: float = 2.0):
        self.seen = {normalise(t) for t in train_texts if isinstance(t, str)}
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.dropped: Counter[str] = Counter()

    def reason(self, source: str, output: str | None) -> str | None:
        """Why `output` is dropped, or None to keep it (then it counts as seen)."""
        if not output or not output.strip():
            return "empty_output"
        src, out = normalise(source), normalise(output)
        if out == src:
            return "identical"
        ratio = len(output) / max(1, len(source))
        if not self.min_ratio <= ratio <= self.max_ratio:
            return "length_ratio"
        if out in self.seen:
            return "duplicate"
        self.seen.add(out)
        return None

    def keep(self, source: str, output: str | None) -> bool:
        why = self.reason(source, output)
        if why is not None:
            self.dropped[why] += 1
        return why is None


def label_consistent(
    texts: list[str], names: list[str], predict_proba: Callable[[list[str]], Predictions], min_confidence: float
) -> tuple[np.ndarray, dict[str, int]]:
    """(keep mask, label -> rows left unchecked): keep a row if the classifier gives its label, matched to a
    column by class name, probability >= min_confidence. Rows of a class the classifier lacks cannot be
    checked: they are kept, and counted."""
    if not texts:
        return np.zeros(0, dtype=bool), {}
    preds = predict_proba(list(texts))  # probs [n_texts, n_model_classes], labels: the model's names
    column = {name: i for i, name in enumerate(preds.labels)}
    known = np.array([name in column for name in names], dtype=bool)
    own = np.asarray(preds.probs)[np.arange(len(texts)), [column.get(name, 0) for name in names]]
    unchecked = Counter(name for name in names if name not in column)
    return ~known | (own >= min_confidence), dict(sorted(unchecked.items()))
