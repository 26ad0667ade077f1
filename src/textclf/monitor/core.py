"""One monitoring pass: a drop (labelled or not) through the champion it judges, against what that champion was
trained and tested on.

The reference is the champion's own: its training split (a seeded sample, for the input tests), its test split (for
the prediction tests) and its registered test scores (for decay). Those splits are the ones its training run logged
as MLflow dataset inputs; the reference profile (descriptors, vectors, test predictions) is computed once per
champion version and cached beside the run outputs. One forward pass over the drop gives both the champion's
predictions and its representation (the vector its classifier layer reads), so input drift is measured in the
space the model actually uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import torch
from datasets import load_from_disk

from textclf.audit import now_iso
from textclf.config import DataConfig, MonitorConfig, PipelineConfig, RegistryTarget
from textclf.data.dedup import normalize_text
from textclf.data.readers import column_strings, head_columns, read_file
from textclf.data.sources import MISSING_LABELS, drop_files, load_source
from textclf.errors import DataError, ModelNotFound
from textclf.modeling import load_trained, saved_max_length
from textclf.monitor import stats
from textclf.monitor.descriptors import compare_descriptors, describe_texts
from textclf.monitor.policy import decide
from textclf.monitor.result import Decay, MonitorResult, PolicyDecision, PredictionDrift
from textclf.registry import current_champion, download_registered, recorded_metrics
from textclf.settings import cpu_threads
from textclf.tracking import client_for

log = logging.getLogger(__name__)
BATCH_SIZE = 64
CONFIDENCE_BINS = 10
PROFILE_VERSION = 3  # bump when the cached reference profile's content changes


class TooFewRows(DataError):
    """A drop (or the rows new since the champion) smaller than monitor.min_rows: nothing the tests can judge."""

    def __init__(self, message: str, rows: int):
        super().__init__(message)
        self.rows = rows

    def __reduce__(self):  # picklable with its count (Prefect persists failed states)
        return (type(self), (str(self), self.rows))


class NoChampion(ModelNotFound):
    """The monitored registry name has no champion yet."""


@dataclass
class Drop:
    """Texts to judge, with their labels where the drop has a label column (None per row where it is empty)."""

    texts: list[str]
    labels: list[str | None] | None
    source: str

    @property
    def labelled(self) -> int:
        return 0 if self.labels is None else sum(label is not None for label in self.labels)


def read_drop(path: Path, data: DataConfig) -> Drop:
    """A drop file or folder: its text column, and its label column where the files have one."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a drop file (.csv/.tsv/.jsonl/.parquet) or a folder of drops")
    texts: list[str] = []
    labels: list[str | None] = []
    with_labels = []
    for file in drop_files(path):
        columns = head_columns(file, data.encoding)
        labelled = columns is None or data.label_column in columns
        needed = [data.text_column] + ([data.label_column] if labelled else [])
        try:
            table, _, _ = read_file(file, needed, data.encoding)
        except DataError:
            if not labelled or columns is not None:
                raise
            table, _, _ = read_file(file, [data.text_column], data.encoding)  # a JSON array without labels
            labelled = False
        column = column_strings(table[data.text_column], label=False).to_pylist()
        texts += ["" if t is None else t for t in column]
        if labelled:
            raw = column_strings(table[data.label_column], label=True).to_pylist()
            labels += [None if v is None or v.strip().lower() in MISSING_LABELS else v.strip() for v in raw]
        else:
            labels += [None] * len(column)
        with_labels.append(labelled)
    return Drop(texts, labels if any(with_labels) else None, str(path))


def check_drop(path: Path | None, cfg: PipelineConfig) -> None:
    """What `textclf monitor` checks before anything starts: the drop reads and is big enough, then that there is a
    champion to judge it with (the judging reads the drop again)."""
    if path is not None:
        drop = read_drop(path, cfg.data)
        if len(drop.texts) < cfg.monitor.min_rows:
            raise TooFewRows(
                f"{drop.source}: {len(drop.texts)} row(s) is fewer than monitor.min_rows={cfg.monitor.min_rows}; "
                "wait for a bigger drop or lower monitor.min_rows",
                len(drop.texts),
            )
    champion_version(cfg)


def monitored_name(cfg: PipelineConfig) -> str:
    """The registry name whose champion monitoring judges (monitor.model)."""
    if cfg.monitor.model == "student" and cfg.distill.enabled:
        return f"{cfg.registry.model_name}-student"
    return cfg.registry.model_name


@dataclass
class Champion:
    name: str
    version: str
    folder: Path  # the Hugging Face model folder
    data_run_id: str  # the run that logged the splits it was trained and tested on
    splits: Path
    registered: dict[str, float]  # its registered test metrics (eval.* tags)

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


def _splits_of_run(cfg: PipelineConfig, run_id: str) -> Path:
    """The saved splits a training run logged as its dataset inputs (textclf.lineage.log_datasets)."""
    run = client_for(cfg.tracking_target()).get_run(run_id)
    for item in run.inputs.dataset_inputs if run.inputs else []:
        try:
            uri = json.loads(item.dataset.source)["uri"]
        except (ValueError, KeyError, TypeError):
            continue
        split_dir = Path(url2pathname(urlsplit(uri).path))
        if split_dir.name == "train":
            folder = split_dir.parent
            if (folder / "dataset_dict.json").is_file():
                return folder
            raise DataError(
                f"the splits run {run_id} was trained on ({folder}) are not on this machine; monitor where it was "
                "trained, or restore its data version (`textclf lineage`, `textclf data restore`) and retrain"
            )
    raise DataError(f"run {run_id} logged no train split as a dataset input; monitoring needs the champion's splits")


def champion_version(cfg: PipelineConfig):
    """The registry's version of monitored_name(cfg) that holds the champion alias; NoChampion when there is none
    (a local store that does not exist yet is not created by asking)."""
    name = monitored_name(cfg)
    uri = cfg.tracking_target().uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():  # not created by asking
        raise NoChampion(
            f"{name} has no @{cfg.registry.champion_alias} to monitor: there is no store at {uri} yet; "
            "train one with `textclf run`"
        )
    reg = RegistryTarget(cfg.tracking_target(), cfg.registry.model_copy(update={"model_name": name}))
    mv = current_champion(reg)
    if mv is None:
        raise NoChampion(
            f"{name} has no @{cfg.registry.champion_alias} to monitor in {cfg.tracking_target().uri}; train one with "
            "`textclf run` (or set monitor.model)"
        )
    return mv


def find_champion(cfg: PipelineConfig, cache: Path) -> Champion:
    """The champion of monitored_name(cfg): downloaded once per version into `cache`, with its splits and scores."""
    mv = champion_version(cfg)
    name = mv.name
    dest = cache / f"{name}-v{mv.version}"
    marker = dest / "folder.txt"
    if marker.is_file() and Path(marker.read_text().strip()).is_dir():
        folder = Path(marker.read_text().strip())
    else:
        folder, _ = download_registered(cfg.tracking_target(), f"models:/{name}/{mv.version}", dest / "model")
        marker.write_text(str(folder))
    data_run = (mv.tags or {}).get("mlflow.run_id") or mv.run_id  # a student's: its teacher run, which logged the splits
    return Champion(name, str(mv.version), folder, data_run, _splits_of_run(cfg, data_run), recorded_metrics(mv))


def _representation_hook(model) -> tuple[list[torch.Tensor], Callable[[], None]]:
    """Capture the vector the classifier layer reads (mean-pooled, or [CLS] for heads that take the sequence)."""
    captured: list[torch.Tensor] = []
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if head is None:
        raise ModelNotFound(f"{type(model).__name__} has no classifier layer to read the representation from")

    def hook(module, inputs):
        x = inputs[0]
        captured.append((x[:, 0] if x.dim() == 3 else x).detach().float().cpu())

    handle = head.register_forward_pre_hook(hook)
    return captured, handle.remove


@torch.inference_mode()
def embed_and_predict(model, tokenizer, texts: list[str], batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities in the model's id order, representation vectors) for `texts`, one forward pass."""
    model.eval()
    torch.set_num_threads(cpu_threads())
    max_length = saved_max_length(tokenizer)
    order = np.argsort([len(t) for t in texts], kind="stable")  # length-sorted batches: less padding
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    vectors: np.ndarray | None = None
    captured, remove = _representation_hook(model)
    try:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            logits = model(**batch).logits.float()
            probs[idx] = torch.softmax(logits, dim=-1).numpy()
            vec = captured.pop().numpy()
            if vectors is None:
                vectors = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
            vectors[idx] = vec
    finally:
        remove()
    return probs, vectors if vectors is not None else np.zeros((0, 0), dtype=np.float32)


@dataclass
class Reference:
    """What the champion was trained and tested on, as the tests read it (cached per champion version)."""

    descriptors: dict[str, np.ndarray]  # of the training sample
    vectors: np.ndarray  # the champion's representation of the training sample (at most embedding_max_rows)
    test_probs: np.ndarray  # its predictions on the test split, the model's id order
    train_label_counts: np.ndarray  # training split labels, the model's id order
    rows: dict[str, int]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"d_{k}": v for k, v in self.descriptors.items()}
        arrays.update(
            vectors=self.vectors,
            test_probs=self.test_probs,
            train_label_counts=self.train_label_counts,
            rows=np.array(json.dumps(self.rows)),
        )
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path) as npz:
            descriptors = {k[2:]: npz[k] for k in npz.files if k.startswith("d_")}
            return cls(descriptors, npz["vectors"], npz["test_probs"], npz["train_label_counts"], json.loads(str(npz["rows"])))


def _model_label_ids(model, names: list[str]) -> list[int]:
    """The model's id for each of the data's class names (the model's classes are matched by name)."""
    ids = {str(model.config.id2label[i]): i for i in range(model.config.num_labels)}
    missing = [n for n in names if n not in ids]
    if missing:
        raise DataError(f"the champion does not know the class(es) {missing}; its classes are {sorted(ids)}")
    return [ids[n] for n in names]


def reference_profile(champion: Champion, model, tokenizer, settings: MonitorConfig, cache: Path) -> Reference:
    key = hashlib.sha256(
        json.dumps([PROFILE_VERSION, settings.reference_rows, settings.embedding_max_rows, settings.seed]).encode()
    ).hexdigest()[:12]
    path = cache / f"{champion.name}-v{champion.version}" / f"reference-{key}.npz"
    if path.is_file():
        return Reference.load(path)
    splits = load_from_disk(str(champion.splits))
    train, test = splits["train"], splits["test"]
    held_out = list(splits["validation"]["text"]) if "validation" in splits else []
    rng = np.random.default_rng(settings.seed)
    pick = rng.choice(len(train), size=min(settings.reference_rows, len(train)), replace=False)
    sample = [train[int(i)]["text"] for i in pick]
    names = list(train.features["label"].names)
    test_texts = list(test["text"])
    # The representation's reference is texts the champion did not train on (its validation and test splits): its
    # vectors of training texts differ from those of any new text (it fitted them), which alone would read as drift.
    probs, vectors = embed_and_predict(model, tokenizer, test_texts + held_out)
    unseen = rng.permutation(len(vectors))[: settings.embedding_max_rows]
    label_ids = _model_label_ids(model, names)
    counts = np.zeros(model.config.num_labels, dtype=np.int64)
    for label, n in zip(*np.unique(np.asarray(train["label"]), return_counts=True), strict=True):
        counts[label_ids[int(label)]] += int(n)
    reference = Reference(
        describe_texts(sample, tokenizer),
        vectors[unseen],
        probs[: len(test_texts)],
        counts,
        {"train": len(train), "train_sample": len(sample), "test": len(test), "embedding_reference": len(unseen)},
    )
    reference.save(path)
    return reference


def _sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _prediction_drift(reference: Reference, probs: np.ndarray, labels: list[str], settings: MonitorConfig) -> PredictionDrift:
    k = probs.shape[1]
    ref_pred = np.bincount(reference.test_probs.argmax(axis=1), minlength=k)
    cur_pred = np.bincount(probs.argmax(axis=1), minlength=k)
    label_test = stats.categorical_test("predicted_label", ref_pred, cur_pred)
    label_test.drifted = label_test.p_value < settings.prediction_p_value and label_test.effect >= settings.descriptor_min_effect
    ref_conf, cur_conf = reference.test_probs.max(axis=1), probs.max(axis=1)
    conf_test = stats.ks_test("confidence", ref_conf, cur_conf)
    conf_test.drifted = conf_test.p_value < settings.prediction_p_value and conf_test.effect >= settings.descriptor_min_effect
    edges = np.linspace(1.0 / k, 1.0, CONFIDENCE_BINS + 1)
    return PredictionDrift(
        labels=labels,
        reference_share=stats.shares(reference.test_probs.argmax(axis=1), k).tolist(),
        current_share=stats.shares(probs.argmax(axis=1), k).tolist(),
        label_test=label_test,
        confidence_edges=edges.tolist(),
        reference_confidence=stats.histogram_shares(ref_conf, edges).tolist(),
        current_confidence=stats.histogram_shares(cur_conf, edges).tolist(),
        confidence_test=conf_test,
    )


def measure_decay(
    reference: Reference, probs: np.ndarray, drop_labels: list[str | None], model, champion: Champion, settings: MonitorConfig
) -> Decay | None:
    rows = [i for i, label in enumerate(drop_labels) if label is not None]
    if not rows:
        return None
    names = [str(drop_labels[i]) for i in rows]
    known = {str(model.config.id2label[i]): i for i in range(model.config.num_labels)}
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise DataError(
            f"the drop's labels {unknown[:5]} are not classes of {champion.ref} ({sorted(known)}); fix the labels or "
            "leave them empty to monitor without decay"
        )
    y_true = np.array([known[n] for n in names])
    y_pred = probs[rows].argmax(axis=1)
    k = model.config.num_labels
    macro_f1 = partial(stats.macro_f1, n_classes=k)
    accuracy, macro = stats.accuracy(y_true, y_pred), macro_f1(y_true, y_pred)
    acc_ci = stats.bootstrap_ci(y_true, y_pred, stats.accuracy, settings.bootstrap, settings.confidence, settings.seed)
    f1_ci = stats.bootstrap_ci(y_true, y_pred, macro_f1, settings.bootstrap, settings.confidence, settings.seed)
    label_test = stats.categorical_test("label", reference.train_label_counts, np.bincount(y_true, minlength=k))
    label_test.drifted = label_test.p_value < settings.prediction_p_value and label_test.effect >= settings.descriptor_min_effect
    reg_acc, reg_f1 = champion.registered.get("accuracy"), champion.registered.get("macro_f1")
    decayed = (reg_acc is not None and acc_ci[1] < reg_acc - settings.max_accuracy_drop) or (
        reg_f1 is not None and f1_ci[1] < reg_f1 - settings.max_accuracy_drop
    )
    return Decay(len(rows), accuracy, acc_ci, macro, f1_ci, reg_acc, reg_f1, label_test, bool(decayed))


def judge(
    champion: Champion,
    model,
    tokenizer,
    reference: Reference,
    drop: Drop,
    settings: MonitorConfig,
    progress: Callable[[str], None] | None = None,
    seen: int = 0,
) -> MonitorResult:
    """Every test of one drop, and the policy's decision; `seen`: rows set aside before (unseen_rows)."""
    started, clock = now_iso(), time.perf_counter()
    if len(drop.texts) < settings.min_rows:
        aside = f" ({seen} more are texts {champion.ref} was trained on, set aside)" if seen else ""
        raise TooFewRows(
            f"{drop.source}: {len(drop.texts)} row(s){aside} is fewer than monitor.min_rows={settings.min_rows}; "
            "wait for a bigger drop or lower monitor.min_rows",
            len(drop.texts),
        )
    probs, vectors = embed_and_predict(model, tokenizer, drop.texts)
    if progress:
        progress(f"{len(drop.texts)} texts through {champion.ref} in {time.perf_counter() - clock:.1f}s")
    descriptors = compare_descriptors(
        reference.descriptors, describe_texts(drop.texts, tokenizer), settings.descriptor_p_value, settings.descriptor_min_effect
    )
    pick = _sample_rows(len(drop.texts), settings.embedding_max_rows, settings.seed)
    embedding = stats.mmd_test("embedding", reference.vectors, vectors[pick], settings.permutations, settings.seed)
    embedding.drifted = embedding.p_value < settings.embedding_p_value
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    prediction = _prediction_drift(reference, probs, labels, settings)
    decay = measure_decay(reference, probs, drop.labels, model, champion, settings) if drop.labels is not None else None
    result = MonitorResult(
        model_name=champion.name,
        model_version=champion.version,
        drop=drop.source,
        rows=len(drop.texts),
        labelled_rows=drop.labelled,
        descriptors=descriptors,
        embedding=embedding,
        prediction=prediction,
        decay=decay,
        decision=PolicyDecision(False, [], ""),
        started=started,
        seen_rows=seen,
        reference={"run_id": champion.data_run_id, "splits": str(champion.splits), **reference.rows},
    )
    result.decision = decide(result, settings)
    result.seconds = time.perf_counter() - clock
    return result


def new_rows(cfg: PipelineConfig, champion: Champion) -> Drop:
    """Rows of the configured data whose text the champion never saw (in none of its splits): the rows that
    arrived since it was trained, with their labels."""
    seen: set[str] = set()
    for split in load_from_disk(str(champion.splits)).values():
        seen.update(normalize_text(t) for t in split["text"])
    data = load_source(cfg.data)
    names = data.features["label"].names
    texts, labels = [], []
    for text, label in zip(data["text"], data["label"], strict=True):
        if normalize_text(text) not in seen:
            texts.append(text)
            labels.append(names[label])
    return Drop(texts, labels, f"rows of {cfg.data.source} new since {champion.ref} was trained")


def unseen_rows(drop: Drop, champion: Champion) -> tuple[Drop, int]:
    """`drop` without the rows whose text the champion was trained on (its training split), and how many those were.

    Such rows say nothing about new data: the champion's representation of a text it fitted differs from that of any
    text it did not (which would read as drift), and its accuracy on them is not its accuracy on new data."""
    trained = {normalize_text(t) for t in load_from_disk(str(champion.splits))["train"]["text"]}
    keep = [i for i, text in enumerate(drop.texts) if normalize_text(text) not in trained]
    if len(keep) == len(drop.texts):
        return drop, 0
    labels = None if drop.labels is None else [drop.labels[i] for i in keep]
    return Drop([drop.texts[i] for i in keep], labels, drop.source), len(drop.texts) - len(keep)


def monitor_drop(cfg: PipelineConfig, drop: Drop | None, progress: Callable[[str], None] | None = None) -> MonitorResult:
    """Judge `drop` (None: the configured data's rows new since the champion) with the current champion."""
    cache = cfg.output_path / "cache" / "monitor"
    champion = find_champion(cfg, cache)
    model, tokenizer = load_trained(champion.folder)
    reference = reference_profile(champion, model, tokenizer, cfg.monitor, cache)
    judged, seen = unseen_rows(drop, champion) if drop is not None else (new_rows(cfg, champion), 0)
    return judge(champion, model, tokenizer, reference, judged, cfg.monitor, progress, seen)
