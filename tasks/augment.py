"""augment: grow the training split (synonyms, back-translation); report to MLflow and the Prefect UI.

`ablation` trains the same config on the un-augmented split, so a run shows what augmentation bought.
"""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import DEFAULT, NO_CACHE

from textclf import stages
from textclf.augment import fan_out
from textclf.augment.backtranslate import roundtrip_chunk
from textclf.config import AugmentConfig, PipelineConfig
from textclf.evaluate import EvalReport
from textclf.tracking import TrackedRun
from textclf.train.finetune import TrainResult


# Persisted per flow run: a retried flow run reuses the augmented split (translations are cached anyway).
@task(name="augment", retries=1, retry_delay_seconds=5, cache_policy=DEFAULT, persist_result=True)
def augment(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run: TrackedRun) -> stages.DataRef:
    """The data to train on: `data` with a larger training split (the same rows when augmentation is off)."""
    augmented = stages.augment(cfg, data, out_dir, run, log_line=get_run_logger().info)
    report = augmented.report
    create_markdown_artifact(report.markdown(), key="augmentation-report", description="augment stage")
    if report.pairs:
        create_table_artifact(report.pairs, key="augmentation-pairs", description="original -> augmented rows")
    get_run_logger().info(
        "training split %d -> %d rows (%s)",
        data.rows["train"],
        augmented.data.rows["train"],
        {op: sum(per.values()) for op, per in report.added.items()} or "; ".join(report.notes),
    )
    return augmented.data


@task(name="ablation", retries=1, retry_delay_seconds=5, cache_policy=DEFAULT, persist_result=True)
def ablation(
    cfg: PipelineConfig, clean: stages.DataRef, out_dir: Path, run: TrackedRun, trained: TrainResult, report: EvalReport
) -> tuple[TrainResult, EvalReport]:
    """The better of the augmented and the un-augmented model (by validation accuracy), with the comparison."""
    outcome = stages.ablation(cfg, clean, out_dir, trained, report, run, log_line=get_run_logger().info)
    create_markdown_artifact(outcome.markdown(), key="augmentation-ablation")
    return outcome.train, outcome.report


# Fan-out (augment.backtranslate.fan_out=dask, flows/augment_fan_out.py): find, translate, store.
@task(name="translation-chunks", cache_policy=NO_CACHE)
def translation_chunks(cfg: PipelineConfig, data: stages.DataRef) -> list[list[str]]:
    """The texts to back-translate that the cache lacks, in chunks of backtranslate.chunk_size."""
    chunks = fan_out.pending_chunks(cfg.augment, cfg.output_path, data.path)
    get_run_logger().info("back-translation fan-out: %d sentences in %d chunks", sum(map(len, chunks)), len(chunks))
    return chunks


@task(name="translate-chunk", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def translate_chunk(cfg: AugmentConfig, texts: list[str]) -> list[tuple[str, str]]:
    """Round trips of one chunk, on whichever worker runs it: (cache key, output) pairs."""
    return roundtrip_chunk(cfg, texts)


@task(name="store-translations", cache_policy=NO_CACHE)
def store_translations(cfg: PipelineConfig, chunks: list[list[tuple[str, str]]]) -> int:
    n = fan_out.store_translations(cfg.augment, cfg.output_path, chunks)
    get_run_logger().info("stored %d translations in the augment cache", n)
    return n
