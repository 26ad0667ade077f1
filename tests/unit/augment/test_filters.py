import numpy as np

from textclf.augment.filters import OutputFilter, label_consistent, normalise, screen


def test_normalise_ignores_case_accents_punctuation_spacing():
    assert normalise("  Café -- GREAT!! ") == normalise("cafe great") == "cafe great"


def test_screen_reasons():
    assert screen("", 100) == "empty" and screen("   ", 100) == "empty" and screen(None, 100) == "empty"
    assert screen("<div>Nice <b>film</b></div>", 100) == "html"
    assert screen("word " * 101, 100) == "too_long"
    assert screen("これは日本語の文です", 100) == "non_latin"
    assert screen("😀😀", 100) == "non_latin"
    assert screen("A fine film 😀", 100) is None


def test_output_filter_drops_and_counts():
    filt = OutputFilter(["Existing text here."], min_ratio=0.5, max_ratio=2.0)
    assert not filt.keep("A good film.", "a GOOD film")  # identical after normalisation
    assert not filt.keep("A good film.", "Fine.")  # too short
    assert not filt.keep("A good film.", "A good film, really very long, far too long now.")  # too long
    assert not filt.keep("Another text, there", "existing text here!")  # duplicate of a training text
    assert filt.keep("A good film.", "A fine film.")
    assert not filt.keep("A nice film.", "A fine film.")  # duplicate of a kept output
    assert dict(filt.dropped) == {"identical": 1, "length_ratio": 2, "duplicate": 2}


def test_label_consistency_matches_classes_by_name():
    from textclf.modeling import Predictions

    def predict_proba(texts):  # a fixed two-class scorer whose classes are listed positive-first: 'bad' -> negative
        return Predictions(np.array([[0.1, 0.9] if "bad" in t else [0.8, 0.2] for t in texts]), ["positive", "negative"])

    mask, unchecked = label_consistent(
        ["bad film", "good film", "bad film", "so-so"], ["negative", "negative", "positive", "mixed"], predict_proba, 0.6
    )
    assert mask.tolist() == [True, False, False, True] and unchecked == {"mixed": 1}  # a class it lacks: kept, counted
    assert label_consistent([], [], predict_proba, 0.6)[0].shape == (0,)
