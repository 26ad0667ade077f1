"""What a retraining run depends on (data bytes, config, code) as one key, and the last run that had it.

A scheduled run whose key equals the key of the last successful MLflow run would train the same
model again (training is seeded), so the flow finishes as "Skipped" instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from textclf import __version__
from textclf.config import PACKAGED_DATA, DataConfig, MlflowTarget, PipelineConfig
from textclf.data.sources import check_source
from textclf.deployments import SCHEDULED_DEPLOYMENT
from textclf.settings import packaged_corpus_path
from textclf.tracking import client_for

KEY_TAG = "textclf.run_key"
# Sections that decide how a run is scheduled or reported, not what it trains.
NOT_IN_KEY = ("ops", "monitor")


@dataclass(frozen=True)
class RunKey:
    data: str
    config: str
    code: str

    @property
    def value(self) -> str:
        return hashlib.sha256(f"{self.data}|{self.config}|{self.code}".encode()).hexdigest()[:24]

    def as_tags(self) -> dict[str, str]:
        return {KEY_TAG: self.value, f"{KEY_TAG}.data": self.data, f"{KEY_TAG}.config": self.config, f"{KEY_TAG}.code": self.code}


def _md5_files(files: list[Path], root: Path | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for path in files:
        digest.update(str(path.relative_to(root) if root else path.name).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_digest(cfg: DataConfig) -> str:
    """md5 of the source's bytes (every file of a folder, by relative name); hub ids hash their name."""
    check_source(cfg)
    if cfg.source == PACKAGED_DATA:
        return _md5_files([packaged_corpus_path()])
    if cfg.source.startswith("hf:"):
        # A hub dataset cannot be read without downloading it; its id stands for its content.
        return hashlib.md5(cfg.source.encode(), usedforsecurity=False).hexdigest()
    path = Path(cfg.source).expanduser()
    if path.is_file():
        return _md5_files([path])
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    return _md5_files(files, root=path)


def config_digest(cfg: PipelineConfig) -> str:
    tree = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_KEY}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def code_version(roots: list[Path]) -> str:
    """Package version + sha256 of every .py file under `roots` (works in a wheel and in git)."""
    digest = hashlib.sha256(__version__.encode())
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def compute_run_key(cfg: PipelineConfig, code_roots: list[Path]) -> RunKey:
    return RunKey(data=data_digest(cfg.data), config=config_digest(cfg), code=code_version(code_roots))


def _newest_finished(target: MlflowTarget, condition: str):
    """The newest FINISHED run of the experiment that matches `condition` (an MLflow filter), or None."""
    client = client_for(target)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"{condition} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def last_successful_run(target: MlflowTarget, key: RunKey) -> str | None:
    """Id of the newest FINISHED MLflow run in the experiment that carries `key`, or None."""
    run = _newest_finished(target, f"tags.`{KEY_TAG}` = '{key.value}'")
    return run.info.run_id if run is not None else None


def last_successful_tags(target: MlflowTarget) -> dict[str, str] | None:
    """Tags of the newest FINISHED run that carries a run key, whatever the key, or None."""
    run = _newest_finished(target, f"tags.`{KEY_TAG}` != ''")
    return dict(run.data.tags) if run is not None else None


@dataclass
class SkipDecision:
    """Whether a run would retrain the same model (and why), with the run key's tags for the new run."""

    skip: bool
    reason: str
    key_tags: dict[str, str] = field(default_factory=dict)
    previous_run_id: str | None = None
    # Only the data changed since the last successful run (same config and code) and this run is one the retrain
    # policy (monitor.scheduled) judges first: it retrains only when the monitor says so.
    ask_policy: bool = False


def decide_skip(cfg: PipelineConfig, code_roots: list[Path], deployment: str | None) -> SkipDecision:
    """`ops.skip_unchanged` applied to this run: skip when the key equals the last successful run's."""
    key = compute_run_key(cfg, code_roots)
    mode = cfg.ops.skip_unchanged
    if mode == "never" or (mode == "scheduled" and deployment != SCHEDULED_DEPLOYMENT):
        return SkipDecision(False, f"ops.skip_unchanged={mode!r}: not a run to skip", key.as_tags())
    previous = last_successful_run(cfg.tracking_target(), key)
    if previous is None:
        newest = last_successful_tags(cfg.tracking_target())
        data_only = (
            newest is not None
            and newest.get(f"{KEY_TAG}.config") == key.config
            and newest.get(f"{KEY_TAG}.code") == key.code
            and newest.get(f"{KEY_TAG}.data") != key.data
        )
        ask = data_only and cfg.monitor.scheduled and deployment == SCHEDULED_DEPLOYMENT
        return SkipDecision(
            False,
            f"run key {key.value} (data {key.data}, config {key.config}, code {key.code}) is new: "
            + ("only the data changed: the retrain policy decides" if ask else "training"),
            key.as_tags(),
            ask_policy=ask,
        )
    reason = (
        f"skipped: data md5 {key.data}, config {key.config} and code {key.code} are unchanged since "
        f"successful MLflow run {previous}"
    )
    return SkipDecision(True, reason, key.as_tags(), previous)
