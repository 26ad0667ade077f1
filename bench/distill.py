"""Distillation benchmark: MiniLM-L6 teacher vs 3- and 2-layer students, distilled vs plainly fine-tuned.

Same process run, CPU demo settings (the pipeline defaults), real Rotten Tomatoes corpus:
  teacher   = MiniLM-L6 fine-tuned with `train` defaults (stages.train, torchrun)
  distilled = student from the teacher's layers, trained by stages.distill (cached teacher logits)
  plain     = the same layers of the *pretrained* MiniLM, fine-tuned on hard labels only with the
              student's budget (distill.epochs, distill.learning_rate, distill.batch_size)
CPU speed: tokenisation + forward at batch 32 (512 test texts per pass) and batch 1 (p50/p95), measured
round-robin over all five models for several rounds (median per model), so a burst of load elsewhere on a
shared machine hits every model alike instead of whichever happened to be timed then.

Run: flock /tmp/textclf-cpu.lock .venv/bin/python bench/distill.py [--max-rows N]
     ... --reuse   re-measures the models a previous run left in --work (training skipped, its times kept)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, comparison, write_results  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

from datasets import load_from_disk  # noqa: E402

from textclf import stages  # noqa: E402
from textclf.config import PACKAGED_MODEL, build_config  # noqa: E402
from textclf.modeling import load_trained  # noqa: E402
from textclf.timing import latency_ms, throughput  # noqa: E402
from textclf.train.distill_report import profile  # noqa: E402
from textclf.train.student import build_layer_student  # noqa: E402


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"[bench] {label}: {seconds:.0f}s", flush=True)
    return out, seconds


def speed_round_robin(model_dirs: dict[str, str], texts: list[str], labels: list[int], cfg, rounds: int):
    """Quality once per model; speed as the median over `rounds` rounds that each time every model in turn."""
    loaded, profiles = {}, {}
    for name, model_dir in model_dirs.items():
        prof, preds = profile(Path(model_dir), texts, labels, cfg.train.max_length, 10, throughput_texts=64)
        model, tokenizer = load_trained(model_dir)
        loaded[name] = (model.eval(), tokenizer)
        profiles[name] = (prof, preds)
    samples = {name: [] for name in model_dirs}
    for _ in range(rounds):
        for name, (model, tokenizer) in loaded.items():
            p50, p95 = latency_ms(model, tokenizer, texts[: cfg.distill.report_latency_texts], cfg.train.max_length)
            rate = throughput(model, tokenizer, texts[:512], cfg.train.max_length, repeats=1)
            samples[name].append((p50, p95, rate))
    for name, rows in samples.items():
        prof = profiles[name][0]
        prof.latency_p50_ms, prof.latency_p95_ms, prof.throughput_b32 = (statistics.median(r[i] for r in rows) for i in range(3))
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=None, help="Subset of the corpus (default: all rows).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/textclf-bench-distill"))
    parser.add_argument("--rounds", type=int, default=5, help="Round-robin speed rounds over the five models.")
    parser.add_argument("--reuse", action="store_true", help="Re-measure the models of the previous run in --work (no training).")
    opts = parser.parse_args()
    manifest = opts.work / "models.json"
    if opts.reuse and not manifest.is_file():
        sys.exit(f"bench/distill.py --reuse: {manifest} is missing; run once without --reuse")
    if opts.work.exists() and not opts.reuse:
        shutil.rmtree(opts.work)
    # The fine-tuned MiniLM teacher and its layer students (the probe teacher's own figures: bench/quality.py).
    tree = {
        "output_dir": str(opts.work),
        "data": {"max_rows": opts.max_rows},
        "train": {"kind": "finetune", "model": PACKAGED_MODEL},
        "distill": {"student_model": ""},
    }
    cfg = build_config(tree, "bench")
    log = lambda line: None  # noqa: E731 - the stages' progress lines would drown the summary
    raw = stages.ingest(cfg, opts.work / "data")
    data = stages.split(cfg, raw, opts.work / "data")
    test = load_from_disk(data.path)["test"]
    texts, labels = list(test["text"]), list(test["label"])
    seconds: dict[str, float] = {}

    if opts.reuse:
        saved = json.loads(manifest.read_text())
        model_dirs, seconds = saved["model_dirs"], saved["seconds"]
    else:
        model_dirs = {}
        teacher, seconds["teacher_train"] = timed(
            "teacher fine-tune", lambda: stages.train(cfg, data, opts.work / "teacher", log_line=log)
        )
        model_dirs["teacher"] = teacher.model_dir
        for n_layers in (3, 2):
            dcfg = cfg.model_copy(
                update={"distill": cfg.distill.model_copy(update={"student_layers": n_layers, "onnx_export": False})}
            )
            outcome, seconds[f"distill_{n_layers}l"] = timed(
                f"distill {n_layers}-layer",
                lambda c=dcfg, n=n_layers: stages.distill(c, data, opts.work / f"distill{n}", teacher.model_dir, log_line=log),
            )
            plain_init, _ = build_layer_student(PACKAGED_MODEL, n_layers, data.labels, opts.work / f"plain{n_layers}-init")
            pcfg = cfg.model_copy(
                update={
                    "train": cfg.train.model_copy(
                        update={
                            "model": str(plain_init),
                            "epochs": cfg.distill.epochs,
                            "learning_rate": cfg.distill.learning_rate,
                            "batch_size": cfg.distill.batch_size,
                        }
                    )
                }
            )
            plain, seconds[f"plain_{n_layers}l"] = timed(
                f"plain {n_layers}-layer fine-tune",
                lambda c=pcfg, n=n_layers: stages.train(c, data, opts.work / f"plain{n}", log_line=log),
            )
            model_dirs[f"distilled_{n_layers}l"] = outcome.model_dir
            model_dirs[f"plain_{n_layers}l"] = plain.model_dir
            seconds[f"teacher_logits_{n_layers}l"] = outcome.plan.logits_seconds
        manifest.write_text(json.dumps({"model_dirs": model_dirs, "seconds": seconds}, indent=2))
    profiles = speed_round_robin(model_dirs, texts, labels, cfg, opts.rounds)

    t, t_preds = profiles["teacher"]
    results, models = {}, {}
    for n_layers, suffix in ((3, ""), (2, "_2layer")):
        s, s_preds = profiles[f"distilled_{n_layers}l"]
        p, _ = profiles[f"plain_{n_layers}l"]
        agreement = float((s_preds == t_preds).mean())
        results[f"student_vs_teacher_accuracy{suffix}"] = comparison(t.accuracy, s.accuracy, "accuracy", True, goal=0.97)
        results[f"student_vs_teacher_throughput{suffix}"] = comparison(
            t.throughput_b32, s.throughput_b32, "texts/s (CPU, batch 32)", True, goal=1.8
        )
        results[f"distilled_vs_plain_student_accuracy{suffix}"] = comparison(
            p.accuracy, s.accuracy, "accuracy", True, goal=1.0, delta=s.accuracy - p.accuracy
        )
        results[f"student_vs_teacher_latency_p50{suffix}"] = comparison(
            t.latency_p50_ms, s.latency_p50_ms, "ms (CPU, batch 1)", False
        )
        results[f"student_teacher_agreement{suffix}"] = {"reference": 1.0, "ours": agreement, "unit": "share", "ratio": agreement}
    for name, (prof, _) in profiles.items():
        models[name] = prof.__dict__
    params = {
        "corpus": "packaged:rotten_tomatoes",
        "max_rows": opts.max_rows,
        "rows": data.rows,
        "train": cfg.train.model_dump(include={"model", "epochs", "learning_rate", "batch_size", "max_length"}),
        "distill": cfg.distill.model_dump(exclude={"enabled", "teacher", "student_model"}),
        "student_init": {"distilled": "teacher's fine-tuned layers i*6//N", "plain": "pretrained MiniLM layers"},
        "seconds": seconds,
        "models": models,
        "speed_rounds": opts.rounds,
        "reused_models": opts.reuse,
    }
    write_results("distill", params, results)
    print(json.dumps({"seconds": seconds}, indent=None))


if __name__ == "__main__":
    main()
