import pytest

from textclf.augment.backtranslate import (
    ApertiumTranslator,
    BackTranslator,
    BergamotTranslator,
    MarianTranslator,
)
from textclf.augment.cache import AugmentCache
from textclf.errors import AugmentSetupError, ConfigError

TEXTS = ["The film is a delight from start to finish.", "A dull, lifeless script.", "I laughed a lot."]


class Counting:
    """A real translator that also counts the sentences it was asked to translate."""

    def __init__(self, inner):
        self.inner, self.backend, self.model, self.sentences = inner, inner.backend, inner.model, 0

    def translate(self, texts, src, tgt):
        self.sentences += len(texts)
        return self.inner.translate(texts, src, tgt)


@pytest.fixture(scope="module")
def bergamot():
    translator = BergamotTranslator(threads=2)
    yield translator
    translator.close()


def test_bergamot_roundtrip_is_cached(bergamot, tmp_path):
    counting = Counting(bergamot)
    with AugmentCache(tmp_path / "c.sqlite") as cache:
        first = BackTranslator(counting, "en", "pt", cache, batch_size=2).roundtrip(TEXTS)
        assert counting.sentences == 2 * len(TEXTS)
        assert all(isinstance(t, str) and t for t in first)
    with AugmentCache(tmp_path / "c.sqlite") as cache:  # a new process would see the same file
        again = BackTranslator(counting, "en", "pt", cache, batch_size=2).roundtrip(TEXTS)
        assert again == first and counting.sentences == 2 * len(TEXTS) and cache.hits == len(TEXTS)
        other = BackTranslator(counting, "en", "pt", cache, settings={"x": 1}).roundtrip(TEXTS[:1])
        assert counting.sentences == 2 * len(TEXTS) + 2 and other == first[:1]


def test_bergamot_threads_match_one_at_a_time(bergamot):
    single = BergamotTranslator(threads=1)
    assert bergamot.translate(TEXTS, "en", "pt") == single.translate(TEXTS, "en", "pt")


def test_a_failing_sentence_costs_only_itself(bergamot):
    runner = BackTranslator(bergamot, "en", "pt", cache=None, batch_size=8)
    out = runner.roundtrip(["A fine film.", "", "Not good."])  # the engine raises on empty text
    assert out[1] is None and out[0] and out[2] and runner.errors == 1


def test_bergamot_rejects_other_pivots(bergamot):
    with pytest.raises(ConfigError, match="pivot=pt"):
        BackTranslator(bergamot, "en", "de", cache=None).roundtrip(TEXTS[:1])


def test_marian_batched_on_a_tiny_random_model(tiny_marian_template, tmp_path):
    batched = MarianTranslator(tiny_marian_template, device="cpu", batch_size=2, max_new_tokens=8)
    looped = MarianTranslator(tiny_marian_template, device="cpu", batch_size=1, max_new_tokens=8)
    pivot = batched.translate(TEXTS, "en", "de")
    assert len(pivot) == len(TEXTS) and all(isinstance(t, str) for t in pivot)
    assert looped.translate(TEXTS, "en", "de") == pivot  # greedy: batching with masks changes nothing
    with AugmentCache(tmp_path / "m.sqlite") as cache:
        out = BackTranslator(batched, "en", "de", cache).roundtrip(TEXTS)
        assert len(out) == len(TEXTS) and len(cache) == sum(1 for t in out if t)


def test_marian_sampling_settings_reach_generate(tiny_marian_template):
    sampled = MarianTranslator(
        tiny_marian_template, device="cpu", do_sample=True, top_p=0.9, temperature=1.5, max_new_tokens=6, seed=1
    )
    assert sampled.generation == {"num_beams": 1, "do_sample": True, "max_new_tokens": 6, "temperature": 1.5, "top_p": 0.9}
    assert sampled.translate(TEXTS[:2], "en", "de") == MarianTranslator(
        tiny_marian_template, device="cpu", do_sample=True, top_p=0.9, temperature=1.5, max_new_tokens=6, seed=1
    ).translate(TEXTS[:2], "en", "de")  # seeded sampling is repeatable


def test_marian_missing_model_is_a_setup_error(tmp_path):
    with pytest.raises(AugmentSetupError, match="could not be loaded"):
        MarianTranslator(str(tmp_path / "none-{src}-{tgt}"), device="cpu").translate(["x"], "en", "de")


def test_apertium_roundtrip_and_missing_binary(monkeypatch, tmp_path):
    try:
        translator = ApertiumTranslator()
    except AugmentSetupError:
        pytest.skip("apertium-eng-spa is not installed (optional backend)")
    out = BackTranslator(translator, "en", "es", cache=None, batch_size=2).roundtrip(TEXTS)
    assert len(out) == 3 and all(out) and out != TEXTS
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AugmentSetupError, match="apertium-eng-spa"):
        ApertiumTranslator()
