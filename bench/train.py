"""Training throughput: textclf's training (torchrun launcher, production defaults) vs plain HF Trainer scripts.

Same model (packaged all-MiniLM-L6-v2), same 1,024 training texts from the packaged Rotten Tomatoes
corpus, batch 32, one epoch, fp32 on this machine's CPUs, all in one process run:

  reference "plain_dynamic": Trainer + DataCollatorWithPadding, random batches (pads to each batch's longest)
  reference "pad_to_max":    Trainer with every text padded to 128 tokens
  ours:                      `stages.train` -> torchrun -> `textclf train` (length-grouped batches,
                             cached Arrow tokens, threads per rank); its time includes an end-of-epoch
                             evaluation on 256 validation texts and saving the best weights, which the
                             references do not do.

samples/s = training texts / Trainer `train_runtime` for all three (model loading and tokenising excluded).
Achieved FLOP/s = 6 x parameters x tokens / train_runtime, against the fp32 matmul peak measured here.

    flock /tmp/textclf-cpu.lock .venv/bin/python bench/train.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, comparison, write_results  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402


def corpus(n_train: int, n_val: int, seed: int) -> DatasetDict:
    from textclf.config import DataConfig
    from textclf.data.sources import load_source

    data = load_source(DataConfig()).shuffle(seed=seed)  # the packaged default corpus
    return DatasetDict(train=data.select(range(n_train)), validation=data.select(range(n_train, n_train + n_val)))


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of one n x n matmul on this machine's torch CPU threads (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class CountingCollator:
    """Wraps a collator and counts real (attention) and padded tokens it hands the model."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def plain_trainer(splits: DatasetDict, model_path: Path, pad_to_max: bool, args: argparse.Namespace) -> dict:
    """What a plain Hugging Face fine-tuning script does."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    padding = "max_length" if pad_to_max else False
    train = splits["train"].map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128, padding=padding), batched=True, remove_columns=["text"]
    )
    collator = CountingCollator(default_data_collator if pad_to_max else DataCollatorWithPadding(tokenizer))
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-train-"),
        num_train_epochs=1,
        per_device_train_batch_size=args.batch,
        learning_rate=1e-4,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        logging_steps=20,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collator)
    runtime = trainer.train().metrics["train_runtime"]
    embeddings = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
    return {
        "runtime_s": runtime,
        "tokens_real": collator.real,
        "tokens_padded": collator.padded,
        "params": sum(p.numel() for p in model.parameters()),
        "embedding_params": embeddings,
    }


def ours(splits_path: Path, root: Path, args: argparse.Namespace) -> dict:
    from textclf import stages
    from textclf.config import PACKAGED_MODEL, build_config

    cfg = build_config(
        {
            "output_dir": str(root / "outputs"),
            "train": {
                "kind": "finetune",
                "model": PACKAGED_MODEL,
                "epochs": 1,
                "batch_size": args.batch,
                "learning_rate": 1e-4,
                "seed": args.seed,
                "nproc_per_node": 1,
                "max_length": 128,
            },
        }
    )
    run = root / f"ours-{time.monotonic_ns()}"
    result = stages.train(cfg, stages.DataRef.of_splits(splits_path), run, log_line=lambda line: None)
    return {
        "runtime_s": result.train_runtime_s,
        "tokens_real": result.tokens_real,
        "tokens_padded": result.tokens_padded,
        "val_accuracy": result.val_metrics.get("val_accuracy"),
        "eval_in_runtime_s": result.eval_runtime_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-examples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each method; the median is kept")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    from textclf.settings import packaged_model_path

    model_path = packaged_model_path()
    root = Path(tempfile.mkdtemp(prefix="bench-train-"))
    splits = corpus(args.train_examples, 256, args.seed)
    splits.save_to_disk(str(root / "splits"))
    peak = matmul_peak_flops()
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)

    runs: dict[str, list[dict]] = {"plain_dynamic": [], "pad_to_max": [], "ours": []}
    for i in range(args.repeats):  # interleaved, so machine load drifts hit every method alike
        runs["plain_dynamic"].append(plain_trainer(splits, model_path, False, args))
        runs["ours"].append(ours(root / "splits", root, args))
        runs["pad_to_max"].append(plain_trainer(splits, model_path, True, args))
        for name, rs in runs.items():
            print(f"repeat {i}: {name} {args.train_examples / rs[-1]['runtime_s']:.1f} samples/s", flush=True)

    params = runs["plain_dynamic"][0]["params"]
    # Embedding lookups are not matmuls: 6 x N x tokens counts N without them (Kaplan et al.).
    matmul_params = params - runs["plain_dynamic"][0]["embedding_params"]

    def summary(name: str) -> dict:
        rs = sorted(runs[name], key=lambda r: r["runtime_s"])
        med = rs[len(rs) // 2]
        runtime = statistics.median(r["runtime_s"] for r in rs)
        return {
            "samples_per_s": args.train_examples / runtime,
            "tflops_padded": 6 * matmul_params * med["tokens_padded"] / runtime / 1e12,
            "tflops_real": 6 * matmul_params * med["tokens_real"] / runtime / 1e12,
            "tflops_padded_all_params": 6 * params * med["tokens_padded"] / runtime / 1e12,
            "padding_share": 1 - med["tokens_real"] / med["tokens_padded"],
            **(
                {
                    "val_accuracy": med["val_accuracy"],
                    "samples_per_s_without_eval": args.train_examples / (runtime - med["eval_in_runtime_s"]),
                }
                if "val_accuracy" in med
                else {}
            ),
        }

    s = {name: summary(name) for name in runs}
    peak_t = peak / 1e12
    detail = {
        name: {**v, "mfu_padded": v["tflops_padded"] / peak_t, "mfu_real": v["tflops_real"] / peak_t} for name, v in s.items()
    }
    results = {
        ref: comparison(
            s[ref]["samples_per_s"],
            s["ours"]["samples_per_s"],
            "samples/s",
            True,
            reference_detail=detail[ref],
            ours_detail=detail["ours"],
        )
        for ref in ("plain_dynamic", "pad_to_max")
    }
    results = {"vs_plain_dynamic": results["plain_dynamic"], "vs_pad_to_max": results["pad_to_max"]}
    write_results(
        "train",
        {
            "model": "packaged all-MiniLM-L6-v2",
            "params": params,
            "params_without_embeddings": matmul_params,
            "train_examples": args.train_examples,
            "batch": args.batch,
            "epochs": 1,
            "max_length": 128,
            "precision": "fp32",
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "fp32_matmul_peak_tflops": peak_t,
            "flops_estimate": "6 x params without embeddings x tokens (padded: what the CPU computed; real: "
            "non-padding tokens); *_all_params counts embeddings too (overestimates: >100% of peak)",
            "ours_extra_work": "end-of-epoch evaluation on 256 texts + best-weights save inside train_runtime",
            "gpu_bf16_mfu": "not run: no GPU machine was lent to this task",
        },
        results,
    )
    for name, v in detail.items():
        print(
            f"{name}: {v['samples_per_s']:.1f} samples/s, padding {v['padding_share']:.0%}, "
            f"{v['tflops_padded'] * 1e3:.1f} GFLOP/s computed ({v['mfu_padded']:.0%} of peak), "
            f"{v['tflops_real'] * 1e3:.1f} GFLOP/s useful ({v['mfu_real']:.0%})"
        )


if __name__ == "__main__":
    main()
