"""Augment the training split of a DatasetDict; validation and test pass through untouched.

New rows per class come from the class multiplier (or balance-to-majority); a share of them is made
by back-translation (capped), the rest by synonym replacement. Every added row carries `origin_op`
and `origin_row` (the index of its source row in the original training split).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, Value

from textclf.augment.backtranslate import Translator, backtranslator_for, make_translator
from textclf.augment.cache import AugmentCache
from textclf.augment.filters import OutputFilter, label_consistent, screen
from textclf.augment.report import AugmentReport
from textclf.augment.synonyms import SynonymReplacer, load_tagger, load_wordnet
from textclf.config import AugmentConfig

if TYPE_CHECKING:  # types only: modeling imports torch, which planning and fan-out never need
    from textclf.modeling import Predictions

SYNONYM, BACKTRANSLATION, ORIGINAL = "synonym", "backtranslation", "original"
N_PAIRS = 20


def new_rows_per_class(counts: dict[str, int], cfg: AugmentConfig) -> dict[str, int]:
    """label -> rows to add: multiplier (per class if given), raised to the majority when balancing."""
    majority = max(counts.values(), default=0)
    out = {}
    for label, n in counts.items():
        target = math.ceil(n * cfg.class_multipliers.get(label, cfg.multiplier))
        if cfg.balance_to_majority:
            target = max(target, majority)
        out[label] = max(0, target - n)
    return out


def plan(
    eligible: dict[str, np.ndarray], wanted: dict[str, int], cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[list[int], dict[int, int]]:
    """(rows to back-translate, row -> synonym variants); each op's capacity per row is respected."""
    bt_cfg, syn_on = cfg.backtranslate, cfg.synonyms.enabled
    share = (bt_cfg.share if syn_on else 1.0) if bt_cfg.enabled else 0.0
    bt_want = {lab: min(len(eligible[lab]), round(n * share)) for lab, n in wanted.items()}
    total = sum(bt_want.values())
    if bt_cfg.max_rows is not None and total > bt_cfg.max_rows:
        bt_want = {lab: int(n * bt_cfg.max_rows / total) for lab, n in bt_want.items()}
    bt_rows: list[int] = []
    syn_counts: dict[int, int] = Counter()
    for label, n in wanted.items():
        rows = rng.permutation(eligible[label])
        if len(rows) == 0:
            continue
        bt_rows += rows[: bt_want[label]].tolist()
        if not syn_on:
            continue
        n_syn = min(n - bt_want[label], len(rows) * cfg.variants_per_example)
        for j in range(n_syn):
            syn_counts[int(rows[j % len(rows)])] += 1
    return bt_rows, dict(syn_counts)


def _synonym_outputs(texts: list[str], rows: dict[int, int], cfg: AugmentConfig) -> list[tuple[int, str]]:
    syn = cfg.synonyms
    replacer = SynonymReplacer(
        load_wordnet(),
        load_tagger(syn.tagger, syn.spacy_model),
        rate=syn.rate,
        max_senses=syn.max_senses,
        protected=syn.protected,
        seed=cfg.seed,
    )
    order = sorted(rows)
    variants = replacer.augment([texts[i] for i in order], [rows[i] for i in order])
    return [(i, v) for i, vs in zip(order, variants, strict=True) for v in vs]


def _backtranslation_outputs(
    texts: list[str],
    rows: list[int],
    cfg: AugmentConfig,
    cache: AugmentCache | None,
    threads: int,
    translator: Translator | None,
    report: AugmentReport,
) -> list[tuple[int, str | None]]:
    own = translator is None
    translator = translator or make_translator(cfg.backtranslate, threads=threads, seed=cfg.seed)
    runner = backtranslator_for(cfg, translator, cache)
    try:
        outputs = runner.roundtrip([texts[i] for i in rows])
    finally:
        if own and hasattr(translator, "close"):
            translator.close()
    report.backend_errors += runner.errors
    return [(i, o) for i, o in zip(rows, outputs, strict=True)]


def _pairs(kept: dict[str, list[tuple[int, str]]], texts: list[str], labels: list[str]) -> list[dict]:
    """Up to 20 original -> augmented pairs, taking turns between the ops."""
    pairs: list[dict] = []
    queues = {op: iter(rows) for op, rows in kept.items()}
    while len(pairs) < N_PAIRS and queues:
        for op in list(queues):
            item = next(queues[op], None)
            if item is None:
                del queues[op]
                continue
            pairs.append({"op": op, "label": labels[item[0]], "original": texts[item[0]], "augmented": item[1]})
            if len(pairs) == N_PAIRS:
                break
    return pairs


def _plan_split(texts: list[str], labels: list[str], cfg: AugmentConfig):
    """(rows to back-translate, row -> synonym variants, skipped counts); a pure function of the split."""
    reasons = [screen(t, cfg.max_words) for t in texts]
    eligible = {
        lab: np.array([i for i, (l2, r) in enumerate(zip(labels, reasons, strict=True)) if l2 == lab and not r], dtype=int)
        for lab in sorted(set(labels))
    }
    wanted = new_rows_per_class(dict(sorted(Counter(labels).items())), cfg)
    bt_rows, syn_rows = plan(eligible, wanted, cfg, np.random.default_rng(cfg.seed))
    return bt_rows, syn_rows, dict(Counter(r for r in reasons if r))


def backtranslation_sources(splits: DatasetDict, cfg: AugmentConfig) -> list[str]:
    """The training texts `augment_train_split` will back-translate with this config (for fan-out)."""
    train = splits["train"]
    names = train.features["label"].names
    texts = list(train["text"])
    bt_rows, _, _ = _plan_split(texts, [names[i] for i in train["label"]], cfg)
    return [texts[i] for i in bt_rows] if cfg.backtranslate.enabled else []


def augment_train_split(
    splits: DatasetDict,
    cfg: AugmentConfig,
    cache: AugmentCache | None = None,
    threads: int = 1,
    translator: Translator | None = None,
    predict_proba: Callable[[list[str]], Predictions] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[DatasetDict, AugmentReport]:
    """The augmented splits (only `train` changes) and a report of what was done."""
    train = splits["train"]
    names = train.features["label"].names
    texts, label_ids = list(train["text"]), list(train["label"])
    labels = [names[i] for i in label_ids]
    report = AugmentReport(rows_before=dict(sorted(Counter(labels).items())))
    bt_rows, syn_rows, report.skipped = _plan_split(texts, labels, cfg)

    outputs: dict[str, Sequence[tuple[int, str | None]]] = {}  # None: a text that did not translate
    if syn_rows:
        report.planned[SYNONYM] = sum(syn_rows.values())
        start = time.perf_counter()
        outputs[SYNONYM] = _synonym_outputs(texts, syn_rows, cfg)
        report.seconds[SYNONYM], report.sources[SYNONYM] = time.perf_counter() - start, len(syn_rows)
        log(f"[augment] synonyms: {len(outputs[SYNONYM])} variants from {len(syn_rows)} rows in {report.seconds[SYNONYM]:.1f}s")
    if bt_rows:
        report.planned[BACKTRANSLATION] = len(bt_rows)
        start = time.perf_counter()
        outputs[BACKTRANSLATION] = _backtranslation_outputs(texts, bt_rows, cfg, cache, threads, translator, report)
        report.seconds[BACKTRANSLATION], report.sources[BACKTRANSLATION] = time.perf_counter() - start, len(bt_rows)
        log(
            f"[augment] back-translation ({cfg.backtranslate.backend}, pivot {cfg.backtranslate.pivot}): "
            f"{len(bt_rows)} rows in {report.seconds[BACKTRANSLATION]:.1f}s"
        )
    if cache is not None:
        report.cache = {"hits": cache.hits, "misses": cache.misses}

    filt = OutputFilter(texts, cfg.min_length_ratio, cfg.max_length_ratio)
    kept: dict[str, list[tuple[int, str]]] = {}
    for op, items in outputs.items():
        report.generated[op] = len(items)
        before = Counter(filt.dropped)
        kept[op] = [(i, o) for i, o in items if filt.keep(texts[i], o) and o is not None]  # keep() drops None
        report.dropped[op] = dict(Counter(filt.dropped) - before)
    if predict_proba is not None:
        unchecked: Counter[str] = Counter()
        for op, rows in kept.items():
            mask, missing = label_consistent(
                [o for _, o in rows], [labels[i] for i, _ in rows], predict_proba, cfg.label_filter.min_confidence
            )
            unchecked.update(missing)
            kept[op] = [row for row, ok in zip(rows, mask, strict=True) if ok]
            if (~mask).sum():
                report.dropped[op]["label_consistency"] = int((~mask).sum())
        if unchecked:
            note = (
                f"label filter: the classifier has no class {sorted(unchecked)}; "
                f"{sum(unchecked.values())} augmented rows of it kept unchecked"
            )
            report.notes.append(note)
            log(f"[augment] {note}")
    report.added = {op: dict(sorted(Counter(labels[i] for i, _ in items).items())) for op, items in kept.items()}
    report.pairs = _pairs(kept, texts, labels)
    augmented_train = _with_rows(train, kept)
    report.rows_after = dict(sorted(Counter(names[i] for i in augmented_train["label"]).items()))
    out = DatasetDict({name: ds for name, ds in splits.items()})
    out["train"] = augmented_train
    return out, report


def _with_rows(train: Dataset, kept: dict[str, list[tuple[int, str]]]) -> Dataset:
    """The training rows plus the augmented ones, each with origin_op / origin_row."""
    frame = train.to_pandas()
    frame["origin_op"] = ORIGINAL
    frame["origin_row"] = np.arange(len(frame), dtype=np.int64)
    parts = [frame]
    for op, items in kept.items():
        if not items:
            continue
        src = np.array([i for i, _ in items], dtype=np.int64)
        added = frame.iloc[src].copy()
        added["text"] = [o for _, o in items]
        added["origin_op"] = op
        added["origin_row"] = src
        parts.append(added)
    features = Features({**train.features, "origin_op": Value("string"), "origin_row": Value("int64")})
    merged = pd.concat(parts, ignore_index=True)
    return Dataset.from_pandas(merged, features=features, preserve_index=False)
