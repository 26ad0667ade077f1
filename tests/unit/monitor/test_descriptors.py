"""textclf.monitor.descriptors on MiniLM's real tokenizer: hand-written texts with known descriptor values, and
drift flagged between long paragraphs and short reviews but not between two halves of the same reviews."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from textclf.data.sources import read_packaged_corpus
from textclf.monitor.descriptors import DESCRIPTORS, compare_descriptors, describe_texts
from textclf.settings import packaged_model_path

TEXTS = [
    "A fine film.",
    "",
    "a  FINE\tfilm. ",  # the first text, up to case and whitespace
    "Это хороший фильм",
    "supercalifragilisticexpialidocious fun",
    "   ",
    "great 🤖",  # MiniLM's WordPiece vocabulary has no robot: [UNK]
    "Café καλό",  # four Latin letters, four Greek ones
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(packaged_model_path())


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    return read_packaged_corpus()["text"].sample(n=1200, random_state=0).tolist()


def test_describe_hand_written_texts(tokenizer):
    d = describe_texts(TEXTS, tokenizer)
    assert tuple(d) == DESCRIPTORS
    assert all(len(v) == len(TEXTS) for v in d.values())
    assert d["length_chars"].tolist() == [len(t) for t in TEXTS]
    assert d["length_words"].tolist() == [3, 0, 3, 3, 2, 0, 2, 2]
    assert d["empty"].tolist() == [False, True, False, False, False, True, False, False]
    assert d["duplicate"].tolist() == [False, False, True, False, False, False, False, False]  # empties are not
    assert d["non_latin_share"].tolist() == pytest.approx([0, 0, 0, 1, 0, 0, 0, 0.5])
    assert d["unknown_token_share"].tolist() == pytest.approx([0, 0, 0, 0, 0, 0, 0.5, 0])
    many = d["many_piece_word_share"]
    assert many[4] == pytest.approx(0.5)  # the made-up word splits into 11 pieces, "fun" is one
    assert many[0] == many[1] == many[6] == 0.0
    assert many[3] == pytest.approx(2 / 3)  # MiniLM spells Cyrillic out letter by letter: "Это" is 3 pieces, not more


def test_many_pieces_is_a_bound(tokenizer):
    loose = describe_texts(TEXTS, tokenizer, many_pieces=20)
    assert loose["many_piece_word_share"][4] == 0.0  # 11 pieces are not more than 20
    assert describe_texts(TEXTS, tokenizer, many_pieces=10)["many_piece_word_share"][4] == pytest.approx(0.5)


def test_describe_no_texts(tokenizer):
    d = describe_texts([], tokenizer)
    assert tuple(d) == DESCRIPTORS and all(len(v) == 0 for v in d.values())


def test_describe_real_reviews_is_plausible(tokenizer, reviews):
    d = describe_texts(reviews, tokenizer)
    assert d["length_words"].mean() == pytest.approx(np.mean([len(t.split()) for t in reviews]))
    assert not d["empty"].any()
    assert d["non_latin_share"].max() < 0.5
    assert 0 < d["many_piece_word_share"].mean() < 0.2  # a few rare words, mostly whole-word tokens


def test_halves_of_the_same_reviews_do_not_drift(tokenizer, reviews):
    reference = describe_texts(reviews[:600], tokenizer)
    current = describe_texts(reviews[600:], tokenizer)
    tests = compare_descriptors(reference, current, p_value=0.05, min_effect=0.1)
    assert [t.name for t in tests] == list(DESCRIPTORS)
    assert [t.method for t in tests[:5]] == ["ks"] * 5
    assert {t.method for t in tests[5:]} <= {"chi2", "fisher"}
    assert not any(t.drifted for t in tests), [t.line() for t in tests if t.drifted]


def test_long_paragraphs_drift_from_short_reviews(tokenizer, reviews):
    reference = describe_texts(reviews[:600], tokenizer)
    paragraphs = [" ".join(reviews[i : i + 8]) for i in range(600, 1200, 4)]  # 150 paragraphs of 8 reviews each
    current = describe_texts(paragraphs, tokenizer)
    tests = {t.name: t for t in compare_descriptors(reference, current, p_value=0.05, min_effect=0.1)}
    assert tests["length_chars"].drifted and tests["length_words"].drifted
    assert tests["length_chars"].effect > 0.8 and tests["length_chars"].p_value < 1e-10
    assert not tests["empty"].drifted and not tests["non_latin_share"].drifted
    for t in tests.values():  # the rule: a Bonferroni-corrected p-value bound and an effect bound, both
        assert t.drifted == (t.p_value < 0.05 / len(DESCRIPTORS) and t.effect >= 0.1)

    # the same shift under an effect bound no KS distance reaches: nothing drifts
    strict = compare_descriptors(reference, current, p_value=0.05, min_effect=1.01)
    assert not any(t.drifted for t in strict)
