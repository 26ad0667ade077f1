import pytest

from textclf.augment.postag import PerceptronTagger, align_tags, held_out, load_default, tokenize, train
from textclf.config import SynonymConfig
from textclf.errors import AugmentSetupError

TEXTS = [
    "The acting is good and the story moves quickly.",
    "I never liked this movie, it's not funny at all.",
    "A beautiful film about 3 brothers who travel across the country in 1999.",
    "Her performance makes the weak script feel honest.",
    "They book a room, then read a good book.",
    "The well-made thriller doesn't waste a minute of its 2.5 hours.",
    "We watched the films twice and loved every scene.",
    "He runs the show with a quiet, patient hand.",
]


def test_tokens_are_spans_of_the_text_with_clitics_split():
    text = "I don't know; it's the film's 3.5 stars, can't miss <b>it</b>."
    tokens = tokenize(text)
    assert all(text[a:b] == w for a, b, w in tokens)
    words = [w for _, _, w in tokens]
    assert words[:4] == ["I", "do", "n't", "know"]
    assert ["it", "'s", "the", "film", "'s", "3.5", "stars"] == words[5:12]
    assert ["ca", "n't", "miss"] == words[13:16]


def test_alignment_takes_spacy_tags_and_the_last_tag_of_a_compound():
    spacy_tokens = [(0, 3, "DT"), (4, 8, "RB"), (8, 9, "HYPH"), (9, 13, "VBN"), (14, 18, "NN")]
    assert align_tags("The well-made film", spacy_tokens) == [("The", "DT"), ("well-made", "VBN"), ("film", "NN")]


@pytest.fixture(scope="module")
def spacy_tagged():
    from textclf.augment.spacy_pipeline import load_spacy

    docs = load_spacy(SynonymConfig().spacy_model).pipe(TEXTS)
    return [
        [(w, t) for w, t in align_tags(text, [(x.idx, x.idx + len(x), x.tag_) for x in doc])]
        for text, doc in zip(TEXTS, docs, strict=True)
    ]


def test_trained_tagger_learns_its_data_saves_and_decodes_batches_like_single_texts(spacy_tagged, tmp_path):
    tagger = train([([w for w, _ in s], [t for _, t in s]) for s in spacy_tagged], iterations=8, seed=0)
    gold = [[t for _, t in s] for s in spacy_tagged]
    got = [[tok.tag for tok in toks] for toks in tagger.tag(TEXTS)]
    right = sum(a == b for g, p in zip(gold, got, strict=True) for a, b in zip(g, p, strict=True))
    assert right / sum(map(len, gold)) >= 0.95
    loaded = PerceptronTagger.load(tagger.save(tmp_path / "tagger.npz"))
    assert [[t.tag for t in toks] for toks in loaded.tag(TEXTS)] == got
    assert [[t.tag for t in loaded.tag([text])[0]] for text in TEXTS] == got  # batching changes nothing
    assert loaded.tag(["", "   "]) == [[], []]


def test_default_tagger_reads_context_and_agrees_with_spacy(spacy_tagged):
    tagger = load_default()
    tags = {text: [(t.text, t.tag) for t in toks] for text, toks in zip(TEXTS, tagger.tag(TEXTS), strict=True)}
    book = tags["They book a room, then read a good book."]
    assert book[1][1].startswith("VB") and book[-2] == ("book", "NN")  # the same word, tagged by its context
    pairs = [(t, g) for s, text in zip(spacy_tagged, TEXTS, strict=True) for (_, t), (_, g) in zip(tags[text], s, strict=True)]
    assert sum(t == g for t, g in pairs) / len(pairs) >= 0.9


def test_held_out_split_is_stable_and_about_a_tenth():
    texts = [f"sentence number {i}" for i in range(2000)]
    share = sum(map(held_out, texts)) / len(texts)
    assert 0.07 < share < 0.13 and held_out(texts[0]) == held_out(texts[0])


def test_missing_model_names_the_setup_step(tmp_path):
    with pytest.raises(AugmentSetupError, match="make setup"):
        load_default(tmp_path / "missing.npz")


def test_precomputed_lexicon_is_saved_and_tags_like_computing_on_demand(spacy_tagged, tmp_path):
    import numpy as np

    sentences = [([w for w, _ in s], [t for _, t in s]) for s in spacy_tagged]
    plain = PerceptronTagger.load(train(sentences, iterations=4).save(tmp_path / "plain.npz"))
    with_lexicon = train(sentences, iterations=4)
    with_lexicon.precompute(["film", "book", "The", "never"])
    path = with_lexicon.save(tmp_path / "lexicon.npz")
    with np.load(path) as z:
        assert {"film", "book", "The", "never"} <= set(z["lexicon"].tolist())
        assert z["lexicon_scores"].shape[:2] == (5, len(z["lexicon"]))
    loaded = PerceptronTagger.load(path)
    assert [[t.tag for t in toks] for toks in loaded.tag(TEXTS)] == [[t.tag for t in toks] for toks in plain.tag(TEXTS)]
