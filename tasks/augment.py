"""augment: grow the training split (synonyms, back-translation); report to MLflow and the Prefect UI.

`ablation` trains the same config on the un-augmented split, so a run shows what augmentation bought.
"""

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import DEFAULT, NO_CACHE

from textclf import stages, tracking
from textclf.augment import fan_out
from textclf.augment.backtranslate import roundtrip_chunk
from textclf.augment.cache import cache_path
from textclf.config import AugmentConfig, PipelineConfig
from textclf.evaluate import EvalReport
from textclf.train.finetune import TrainResult


# Persisted per flow run: a retried flow run reuses the augmented split (translations are cached anyway).
@task(name="augment", retries=1, retry_delay_seconds=5, cache_policy=DEFAULT, persist_result=True)
def augment(cfg: PipelineConfig, data: stages.DataRef, out_dir: Path, run_id: str) -> stages.DataRef:
    """The data to train on: `data` with a larger training split, or `data` itself when augmentation is off."""
    log = get_run_logger()
    if not cfg.augment.enabled:
        log.info("augmentation off (augment.enabled=false)")
        return data
    augmented, report = stages.augment(cfg, data, out_dir, log_line=log.info)
    tracking.log_metrics(cfg, run_id, report.metrics())
    tracking.log_artifacts(cfg, run_id, Path(out_dir) / "augment", "augment")
    create_markdown_artifact(report.markdown(), key="augmentation-report", description="augment stage")
    if report.pairs:
        create_table_artifact(report.pairs, key="augmentation-pairs", description="original -> augmented rows")
    log.info("augmented train split %d -> %d rows (%s)", data.rows["train"], augmented.rows["train"],
             {op: sum(per.values()) for op, per in report.added.items()})
    return augmented


@task(name="ablation", retries=1, retry_delay_seconds=5, cache_policy=DEFAULT, persist_result=True)
def ablation(cfg: PipelineConfig, clean: stages.DataRef, out_dir: Path, run_id: str, trained: TrainResult,
             report: EvalReport) -> tuple[TrainResult, EvalReport]:
    """Train and evaluate without augmentation (same seed, same split); return the better model by
    validation accuracy. Both results and the delta go to MLflow."""
    base_dir = Path(out_dir) / "ablation-noaug"
    base = stages.train(cfg, clean, base_dir, log_line=get_run_logger().info)
    base_report = stages.evaluate(cfg, base.model_dir, clean, base_dir)
    with_aug, without = report.prefixed(), base_report.prefixed()
    delta = {f"ablation.delta.{k}": with_aug[k] - without[k] for k in with_aug if k in without}
    noaug = {f"ablation.noaug.{k}": v for k, v in {**base.val_metrics, **without}.items()}
    tracking.log_metrics(cfg, run_id, {**noaug, **delta})
    keep_augmented = trained.val_metrics.get("val_accuracy", 0.0) >= base.val_metrics.get("val_accuracy", 0.0)
    tracking.set_tags(cfg, run_id, {"augment.ablation.chosen": "augmented" if keep_augmented else "no-augmentation"})
    rows = "\n".join(f"| {k} | {with_aug[k]:.4f} | {without[k]:.4f} | {with_aug[k] - without[k]:+.4f} |"
                     for k in with_aug if k in without)
    create_markdown_artifact(
        "## Augmentation ablation\n\n| metric | with | without | delta |\n|---|---|---|---|\n" + rows +
        f"\n\nPromotion candidate: **{'augmented' if keep_augmented else 'without augmentation'}** "
        "(higher validation accuracy).", key="augmentation-ablation")
    return (trained, report) if keep_augmented else (base, base_report)


# Fan-out (augment.backtranslate.fan_out=dask, flows/augment_fan_out.py): find, translate, store.
@task(name="translation-chunks", cache_policy=NO_CACHE)
def translation_chunks(cfg: PipelineConfig, data: stages.DataRef) -> list[list[str]]:
    """The texts to back-translate that the cache lacks, in chunks of backtranslate.chunk_size."""
    chunks = fan_out.pending_chunks(cfg, data.path)
    get_run_logger().info("back-translation fan-out: %d sentences in %d chunks", sum(map(len, chunks)), len(chunks))
    return chunks


@task(name="translate-chunk", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def translate_chunk(cfg: AugmentConfig, texts: list[str]) -> list[tuple[str, str]]:
    """Round trips of one chunk, on whichever worker runs it: (cache key, output) pairs."""
    return roundtrip_chunk(cfg, texts)


@task(name="store-translations", cache_policy=NO_CACHE)
def store_translations(cfg: PipelineConfig, chunks: list[list[tuple[str, str]]]) -> int:
    n = fan_out.store_translations(cfg, chunks)
    get_run_logger().info("stored %d translations in %s", n, cache_path(cfg))
    return n
