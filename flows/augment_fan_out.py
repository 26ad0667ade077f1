"""Back-translation fanned out over a Prefect Dask task runner, in chunks, into the translation cache.

`retrain` runs it before the augment task when augment.backtranslate.fan_out=dask; the augment task
then finds every translation in the cache. Workers of a remote cluster (dask_address) need this
project installed; they return their outputs, so they never touch the cache file.
"""

from __future__ import annotations

from prefect import flow, unmapped

from textclf.config import PipelineConfig
from textclf.stages import DataRef
from textclf_tasks.augment import store_translations, translate_chunk, translation_chunks


@flow(name="augment-translate", validate_parameters=False)
def translate_fan_out(config: PipelineConfig, data: DataRef) -> int:
    """Translate what the augment stage will need and the cache lacks; returns the number stored."""
    chunks = translation_chunks(config, data)
    futures = translate_chunk.map(unmapped(config.augment), chunks)
    return store_translations(config, futures)


def dask_task_runner(config: PipelineConfig):
    """The configured cluster: an existing scheduler, or a local one of single-threaded worker processes."""
    from prefect_dask import DaskTaskRunner

    bt = config.augment.backtranslate
    if bt.dask_address:
        return DaskTaskRunner(address=bt.dask_address)
    # One single-threaded worker process per core unless dask_workers says otherwise (Dask's default count).
    sizing = {"n_workers": bt.dask_workers} if bt.dask_workers else {}
    return DaskTaskRunner(cluster_kwargs={**sizing, "threads_per_worker": 1, "processes": True, "dashboard_address": None})


def fan_out_translations(config: PipelineConfig, data: DataRef) -> int:
    return translate_fan_out.with_options(task_runner=dask_task_runner(config))(config, data)
