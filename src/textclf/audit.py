"""The promotion audit trail: one immutable MLflow run per decision, and the lock that serialises decisions.

Why runs in a dedicated experiment (not a JSON-lines artifact, not a table of our own):
- append-only without read-modify-write: each decision *creates* a run; nothing is ever rewritten, so two
  writers cannot lose each other's records (an artifact log would need download-append-upload);
- it lives in the same tracking store as the registry (sqlite here, PostgreSQL + S3 behind a server) and
  works through a remote `mlflow server`, where clients have no database access;
- auditors browse it in the MLflow UI (experiment `registry.audit_experiment`, filter by tags) and we
  read it back with one search (the whole record is a tag; `decision.json` is the artifact copy).
MLflow keeps no history of aliases itself; this is that history.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunTag, ViewType

from textclf.config import RegistryTarget
from textclf.errors import TextclfError
from textclf.tracking import client_for

RECORD_TAG = "audit.record"
MAX_TAG = 7900  # MLflow caps tag values at 8000 characters


class PromotionLockTimeout(TextclfError):
    """Another promotion held the registry lock for too long."""


@dataclass
class DecisionRecord:
    """One decision about the champion alias: what was decided, on which evidence, by whom."""

    model_name: str
    action: str  # "gate" (automatic), "promote" (a person), "rollback" (a person)
    promoted: bool  # whether the alias now points at candidate_version because of this decision
    candidate_version: str
    previous_champion: str | None
    champion_after: str | None
    reason: str
    trigger: str
    actor: str = "unknown"
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    candidate_run_id: str | None = None
    # The gate's label verdict: "same", "reordered", "changed" ("" when there was no champion to compare with),
    # with the champion's classes (its id2label, in id order) and the data's (ClassLabel names).
    label_verdict: str = ""
    champion_labels: list[str] = field(default_factory=list)
    data_labels: list[str] = field(default_factory=list)
    time: str = ""
    seq: int = 0
    audit_run_id: str = ""

    @property
    def decision(self) -> str:
        if self.action == "rollback":
            return "rolled-back"
        return "promoted" if self.promoted else "rejected"

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        prev = f"v{self.previous_champion}" if self.previous_champion else "none"
        after = f"v{self.champion_after}" if self.champion_after else "none"
        return (
            f"{self.seq:>4}  {self.time}  {self.action:<8} {self.decision:<11} cand v{self.candidate_version:<4} "
            f"champion {prev} -> {after}  trigger={self.trigger} actor={self.actor}  {self.reason}"
        )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _experiment_id(reg: RegistryTarget) -> str:
    client = client_for(reg.mlflow)
    found = client.get_experiment_by_name(reg.settings.audit_experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            reg.settings.audit_experiment,
            artifact_location=reg.mlflow.artifact_root,
            tags={"purpose": "promotion audit trail (append-only)"},
        )
    except Exception:  # created concurrently by another writer: use theirs
        found = client.get_experiment_by_name(reg.settings.audit_experiment)
        if found is None:
            raise
        return found.experiment_id


def read_history(reg: RegistryTarget, model_name: str | None = None) -> list[DecisionRecord]:
    """All recorded decisions (for one registered model, or all), oldest first."""
    client = client_for(reg.mlflow)
    found = client.get_experiment_by_name(reg.settings.audit_experiment)
    if found is None:
        return []
    query = f"tags.`audit.model_name` = '{model_name}'" if model_name else ""
    records, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id], query, ViewType.ALL, max_results=1000, order_by=["attributes.start_time ASC"], page_token=token
        )
        for run in page:
            raw = run.data.tags.get(RECORD_TAG)
            if raw:
                record = DecisionRecord(**json.loads(raw))
                record.audit_run_id = run.info.run_id
                records.append(record)
        token = page.token
        if not token:
            break
    return sorted(records, key=lambda r: (r.seq, r.time))


def append_record(reg: RegistryTarget, record: DecisionRecord) -> DecisionRecord:
    """Write `record` as a new run of the audit experiment; call it under `promotion_lock`.

    The sequence number is the model's last one + 1, consistent because the lock serialises writers.
    """
    client = client_for(reg.mlflow)
    experiment_id = _experiment_id(reg)
    previous = read_history(reg, record.model_name)
    record.seq = (previous[-1].seq + 1) if previous else 1
    record.time = record.time or now_iso()
    body = json.dumps(record.to_dict(), sort_keys=True)
    if len(body) > MAX_TAG:  # keep the tag readable; decision.json below keeps everything
        slim = {**record.to_dict(), "candidate_metrics": {}, "champion_metrics": {}}
        body = json.dumps(slim, sort_keys=True)
    tags = {
        "audit.model_name": record.model_name,
        "audit.seq": str(record.seq),
        "audit.action": record.action,
        "audit.decision": record.decision,
        "audit.candidate_version": record.candidate_version,
        "audit.previous_champion": record.previous_champion or "",
        "audit.champion_after": record.champion_after or "",
        "audit.trigger": record.trigger,
        "audit.actor": record.actor,
        "audit.reason": record.reason[:MAX_TAG],
        "mlflow.note.content": _note(record),
        RECORD_TAG: body,
    }
    run = client.create_run(experiment_id, run_name=f"{record.model_name}-{record.seq:04d}-{record.decision}", tags=tags)
    run_id = run.info.run_id
    stamp = int(time.time() * 1000)
    metrics = [Metric(f"candidate.{k}", float(v), stamp, 0) for k, v in record.candidate_metrics.items()]
    metrics += [Metric(f"champion.{k}", float(v), stamp, 0) for k, v in record.champion_metrics.items()]
    params = [Param(f"threshold.{k}", str(v)) for k, v in record.thresholds.items()]
    client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("audit.run_id", run_id)])
    record.audit_run_id = run_id
    client.log_dict(run_id, record.to_dict(), "decision.json")
    client.set_terminated(run_id)
    return record


def _note(record: DecisionRecord) -> str:
    rows = "\n".join(
        f"| {k} | {record.candidate_metrics.get(k, '')} | {record.champion_metrics.get(k, '')} |"
        for k in sorted(set(record.candidate_metrics) | set(record.champion_metrics))
    )
    return (
        f"**{record.decision}** `{record.model_name}` v{record.candidate_version} "
        f"(champion before: {record.previous_champion or 'none'}, after: {record.champion_after or 'none'})\n\n"
        f"- action: {record.action}\n- trigger: {record.trigger}\n- actor: {record.actor}\n"
        f"- reason: {record.reason}\n- thresholds: {json.dumps(record.thresholds)}\n\n"
        f"| metric | candidate | champion |\n|---|---|---|\n{rows}"
    )[:MAX_TAG]


def champion_stack(records: list[DecisionRecord]) -> list[str]:
    """Champions in order of tenure, as the audited actions left them: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for record in records:
        if record.action == "rollback":
            if stack:
                stack.pop()
        elif record.promoted:
            stack.append(record.candidate_version)
    return stack


def lock_path(reg: RegistryTarget) -> Path | None:
    """A lock file beside a local sqlite store; None for remote stores (see infra/audit.md)."""
    uri = reg.mlflow.uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///") + ".promote.lock")
    return None


@contextmanager
def promotion_lock(reg: RegistryTarget):
    """Serialise champion decisions across threads and processes sharing a local store.

    Remote servers get no lock here: the compare-and-set in registry.py (re-read the alias right before
    and after setting it) still detects a lost race; run one promotion at a time there (a Prefect
    concurrency limit on the `promote` task).
    """
    path = lock_path(reg)
    if path is None:
        yield
        return
    timeout_s = reg.settings.lock_timeout_s
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=timeout_s, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise PromotionLockTimeout(
            f"promotion lock {path} held by another promotion for more than "
            f"{timeout_s:g}s; retry later or raise "
            "registry.lock_timeout_s"
        ) from None
    try:
        yield
    finally:
        lock.release()
