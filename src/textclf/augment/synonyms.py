"""Part-of-speech aware WordNet synonym replacement.

A tagger gives Penn tags in context (by default the fast perceptron of textclf.augment.postag, taught
by spaCy; or spaCy's small English pipeline itself); a word is only replaced by a lemma of one of its
WordNet senses of that part of speech. Stopwords, negations, numbers and protected words are
never touched. Output is a pure function of (text, seed, variant index), so reruns and any batching
give the same rows.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from textclf.augment.postag import Token, load_default
from textclf.augment.spacy_pipeline import load_spacy
from textclf.errors import AugmentSetupError

# Negations flip a sentiment label: replacing them is never a paraphrase.
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "n't",
        "nt",
        "none",
        "nobody",
        "nothing",
        "nowhere",
        "neither",
        "nor",
        "cannot",
        "without",
        "hardly",
        "barely",
        "scarcely",
        "seldom",
        "rarely",
        "ain't",
        "isn't",
        "wasn't",
        "don't",
        "doesn't",
        "didn't",
        "won't",
        "can't",
        "couldn't",
        "shouldn't",
        "wouldn't",
        "aren't",
        "weren't",
    }
)

# Penn tag -> (WordNet POS, how to inflect the base-form synonym). Other verb forms (past, gerund,
# participle) are left alone: WordNet holds base forms and a wrong inflection is not a paraphrase.
PENN_TO_WORDNET = {
    "NN": ("n", None),
    "NNS": ("n", "plural"),
    "VB": ("v", None),
    "VBP": ("v", None),
    "VBZ": ("v", "third_person"),
    "JJ": ("a", None),
    "RB": ("r", None),
}
IRREGULAR_THIRD_PERSON = {"be": "is", "have": "has", "do": "does", "go": "goes"}
WORDNET_PACKAGES = "apt-get install wordnet-base wordnet-sense-index, then `make setup` (infra/setup.d/wordnet.sh)"


def load_wordnet():
    """NLTK's WordNet reader over the corpus infra/setup.d/wordnet.sh prepared (in <venv>/share/nltk_data)."""
    try:
        import nltk  # the augment extra; loaded when synonyms are asked for
        from nltk.corpus import wordnet
    except ImportError:
        raise AugmentSetupError("augment.synonyms needs the `nltk` package; run `make setup`") from None
    venv_data = str(Path(sys.prefix) / "share" / "nltk_data")
    if venv_data not in nltk.data.path:
        nltk.data.path.insert(0, venv_data)
    try:
        wordnet.ensure_loaded()
    except LookupError:
        raise AugmentSetupError(
            f"augment.synonyms: WordNet not found for NLTK (looked in {venv_data}); {WORDNET_PACKAGES}"
        ) from None
    return wordnet


class SpacyTagger:
    """spaCy's tags as the same Token spans the perceptron gives."""

    def __init__(self, nlp, batch_size: int = 256):
        self.nlp = nlp
        self.batch_size = batch_size

    def tag(self, texts: Sequence[str]) -> list[list[Token]]:
        return [
            [Token(t.idx, t.idx + len(t.text), t.text, t.tag_) for t in doc if not t.is_space]
            for doc in self.nlp.pipe(texts, batch_size=self.batch_size)
        ]


def load_tagger(kind: str, spacy_model: str):
    """`perceptron` (fast, trained at set-up from spaCy's tags) or `spacy` (the pipeline itself)."""
    if kind == "spacy":
        return SpacyTagger(load_spacy(spacy_model))
    return load_default()


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def inflect(phrase: str, how: str | None) -> str:
    """Plural noun (last word) or third-person verb (first word) from a WordNet base form."""
    if how is None:
        return phrase
    words = phrase.split(" ")
    i = -1 if how == "plural" else 0
    word = words[i]
    if how == "third_person" and word in IRREGULAR_THIRD_PERSON:
        word = IRREGULAR_THIRD_PERSON[word]
    elif word.endswith(("s", "x", "z", "ch", "sh")) or (how == "third_person" and word.endswith("o")):
        word += "es"
    elif word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        word = word[:-1] + "ies"
    else:
        word += "s"
    words[i] = word
    return " ".join(words)


def match_case(replacement: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class SynonymReplacer:
    """Replace a share of a sentence's content words with WordNet synonyms of the same part of speech."""

    def __init__(self, wordnet, tagger, rate: float = 0.2, max_senses: int = 3, protected: Iterable[str] = (), seed: int = 0):
        from spacy.lang.en.lex_attrs import like_num  # the augment extra (spaCy): loaded on use
        from spacy.lang.en.stop_words import STOP_WORDS

        self.wordnet = wordnet
        self.tagger = tagger
        self.rate = rate
        self.max_senses = max_senses
        self.seed = seed
        self.blocked = frozenset(w.lower() for w in STOP_WORDS) | NEGATIONS | {w.lower() for w in protected}
        self._like_num = like_num
        self._synonyms: dict[tuple[str, str], tuple[str, ...]] = {}
        self._replaceable: dict[str, bool] = {}  # word -> not a stopword, negation, number or protected

    def synonyms(self, word: str, pos: str) -> tuple[str, ...]:
        """Lemmas of the word's first `max_senses` synsets of `pos`, multi-word ones with spaces."""
        key = (word, pos)
        found = self._synonyms.get(key)
        if found is None:
            base = self.wordnet.morphy(word, pos) or word
            names: dict[str, None] = {}
            for synset in self.wordnet.synsets(base, pos=pos)[: self.max_senses]:
                for lemma in synset.lemma_names():
                    name = lemma.replace("_", " ")
                    # Capitalised lemmas are names (Bob, Paris); digits are not paraphrases.
                    if name.lower() in (word, base) or not name.islower() or any(c.isdigit() for c in name):
                        continue
                    names[name] = None
            found = self._synonyms[key] = tuple(names)
        return found

    def _candidates(self, tokens: Sequence[Token]) -> list[tuple[int, str, str | None]]:
        out = []
        replaceable = self._replaceable
        for i, tok in enumerate(tokens):
            mapped = PENN_TO_WORDNET.get(tok.tag)
            if mapped is None:
                continue
            ok = replaceable.get(tok.text)
            if ok is None:
                low = tok.text.lower()
                ok = replaceable[tok.text] = (
                    len(low) > 1 and low.isalpha() and low not in self.blocked and not self._like_num(low)
                )
            if ok:
                out.append((i, mapped[0], mapped[1]))
        return out

    def _variant(self, text: str, tokens: Sequence[Token], candidates, rng: random.Random) -> str | None:
        want = max(1, round(self.rate * len(candidates)))
        order = list(candidates)
        rng.shuffle(order)
        replaced: dict[int, str] = {}
        for i, pos, how in order:
            options = self.synonyms(tokens[i].text.lower(), pos)
            if not options:
                continue
            replaced[i] = match_case(inflect(rng.choice(options), how), tokens[i].text)
            if len(replaced) == want:
                break
        if not replaced:
            return None
        parts, at = [], 0
        for i in sorted(replaced):  # splice into the original text: spacing and markup stay as they were
            parts += [text[at : tokens[i].start], replaced[i]]
            at = tokens[i].end
        parts.append(text[at:])
        return "".join(parts)

    def variants_for_tokens(self, text: str, tokens: Sequence[Token], n_variants: int) -> list[str]:
        """Up to `n_variants` distinct rewrites of one tagged text (fewer when synonyms run out)."""
        candidates = self._candidates(tokens)
        if not candidates:
            return []
        out: list[str] = []
        for v in range(n_variants):
            rng = random.Random(stable_seed(self.seed, v, text))
            variant = self._variant(text, tokens, candidates, rng)
            if variant is not None and variant != text and variant not in out:
                out.append(variant)
        return out

    def augment(self, texts: Sequence[str], n_variants: int | Sequence[int] = 1, batch_size: int = 2048) -> list[list[str]]:
        """For each text, its variants (a list; empty when no word could be replaced)."""
        counts = [n_variants] * len(texts) if isinstance(n_variants, int) else list(n_variants)
        if len(counts) != len(texts):
            raise ValueError(f"{len(counts)} variant counts for {len(texts)} texts")
        out: list[list[str]] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            for text, tokens, n in zip(chunk, self.tagger.tag(chunk), counts[start : start + batch_size], strict=True):
                out.append(self.variants_for_tokens(text, tokens, n))
        return out
