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
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from textclf.config import RegistryTarget
from textclf.errors import TextclfError
from textclf.tracking import client_for

RECORD_TAG = "audit.record"
STATE_TAG = "audit.state"  # pending -> committed | aborted; the one tag of an audit run that is ever rewritten
RECONCILED_TAG = "audit.reconciled"
STATES = ("pending", "committed", "aborted")
MAX_TAG = 7900  # MLflow caps tag values at 8000 characters


class PromotionLockTimeout(TextclfError):
    """Another promotion held the registry lock for too long."""


class PromotionLockLost(TextclfError):
    """The promotion lease expired and was taken over before the alias was moved."""


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
    # Audit first: written "pending" before the alias moves, then "committed" or "aborted" (records from before
    # record states existed are committed). `reconciled`: the state was decided later against the live alias.
    state: str = "committed"
    reconciled: bool = False

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
        state = "" if self.state == "committed" and not self.reconciled else f"[{self.state}{' (reconciled)' * self.reconciled}] "
        return (
            f"{self.seq:>4}  {self.time}  {self.action:<8} {self.decision:<11} cand v{self.candidate_version:<4} "
            f"champion {prev} -> {after}  trigger={self.trigger} actor={self.actor}  {state}{self.reason}"
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
                record.state = run.data.tags.get(STATE_TAG, "committed")  # the tag, not the body, is current
                record.reconciled = run.data.tags.get(RECONCILED_TAG) == "true"
                records.append(record)
        token = page.token
        if not token:
            break
    return sorted(records, key=lambda r: (r.seq, r.time))


def append_record(reg: RegistryTarget, record: DecisionRecord, state: str = "committed") -> DecisionRecord:
    """Write `record` as a new run of the audit experiment in `state`; call it under `promotion_lock`.

    The sequence number is the model's last one + 1 (pending and aborted records count), contiguous because the
    lock serialises writers.
    """
    client = client_for(reg.mlflow)
    experiment_id = _experiment_id(reg)
    previous = read_history(reg, record.model_name)
    record.seq = (previous[-1].seq + 1) if previous else 1
    record.time = record.time or now_iso()
    record.state = state
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
        STATE_TAG: state,
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


def mark_state(reg: RegistryTarget, record: DecisionRecord, state: str, reconciled: bool = False) -> DecisionRecord:
    """Move a pending record to committed or aborted (a tag of its audit run); call it under `promotion_lock`."""
    if state not in STATES:
        raise ValueError(f"unknown record state {state!r}")
    client = client_for(reg.mlflow)
    client.set_tag(record.audit_run_id, STATE_TAG, state)
    if reconciled:
        client.set_tag(record.audit_run_id, RECONCILED_TAG, "true")
    record.state, record.reconciled = state, reconciled or record.reconciled
    return record


def reconciled_state(records: list[DecisionRecord], index: int, live: str | None) -> str:
    """What a pending record's promotion actually did: "committed" if the alias moved as it said, else "aborted".

    The last record is judged by the live alias; an earlier one by the champion its successor found.
    """
    record = records[index]
    found = records[index + 1].previous_champion if index + 1 < len(records) else live
    return "committed" if found == record.champion_after else "aborted"


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
        if record.state != "committed":  # aborted moves were undone; pending ones are reconciled first
            continue
        if record.action == "rollback":
            if stack:
                stack.pop()
        elif record.promoted:
            stack.append(record.candidate_version)
    return stack


def lock_path(reg: RegistryTarget) -> Path | None:
    """A lock file beside a local sqlite store (the fast path between local threads); None for other stores."""
    uri = reg.mlflow.uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///") + ".promote.lock")
    return None


# The lease: a registered model `<model>.promotion-lock` in the registry itself (see infra/audit.md). Creating a
# registered model is atomic in every SQL store (a unique name in one transaction), directly or through any
# `mlflow server`, so exactly one creator holds it; it is deleted to release it.
LOCK_SUFFIX = ".promotion-lock"
OWNER_TAG = "lock.owner"
EXPIRES_TAG = "lock.expires_at"  # unix time (holder's clock) after which the lease may be taken over


def lock_model_name(reg: RegistryTarget) -> str:
    return f"{reg.name}{LOCK_SUFFIX}"


def _holder(client, name: str) -> tuple[str, float] | None:
    """(owner, expires_at) of a lease model, or None when nobody holds it."""
    try:
        tags = client.get_registered_model(name).tags or {}
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    try:
        expires = float(tags.get(EXPIRES_TAG, "0"))
    except ValueError:
        expires = 0.0
    return tags.get(OWNER_TAG, ""), expires


def _try_create(client, name: str, owner: str, lease_s: float) -> float | None:
    """Create the lease model atomically; its expiry if this call created it, None if it already exists.

    MLflow's store answers a create that collides with an existing name by reading that model; when its holder
    deletes it in between, the create fails with RESOURCE_DOES_NOT_EXIST: not created either (seen under load with
    PostgreSQL behind the server), so the caller tries again."""
    expires = time.time() + lease_s
    tags = {OWNER_TAG: owner, EXPIRES_TAG: f"{expires:.3f}"}
    try:
        client.create_registered_model(name, tags=tags, description="textclf promotion lease (see infra/audit.md); not a model")
    except MlflowException as err:
        if err.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise
    return expires


def _delete_quietly(client, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _take_over_expired(client, name: str, seen_owner: str, lease_s: float) -> None:
    """Delete an expired lease, once: the taker first creates a token named after the lease it saw (atomic too),
    so two takers cannot both delete, the second deleting the first one's fresh lease."""
    token = f"{name}.takeover-{''.join(c for c in seen_owner.rsplit(':', 1)[-1] if c.isalnum())[:32] or 'unknown'}"
    if _try_create(client, token, seen_owner, lease_s) is None:
        held = _holder(client, token)
        if held is not None and held[1] <= time.time():  # a taker died holding the token
            _delete_quietly(client, token)
        return
    try:
        held = _holder(client, name)
        if held is not None and held[0] == seen_owner and held[1] <= time.time():
            _delete_quietly(client, name)
    finally:
        _delete_quietly(client, token)


@dataclass
class Lease:
    """A held promotion lease: `check()` before an irreversible step, released when the lock's block ends."""

    reg: RegistryTarget
    name: str
    owner: str
    expires_at: float

    def check(self) -> None:
        held = _holder(client_for(self.reg.mlflow), self.name)
        if held is None or held[0] != self.owner or time.time() >= self.expires_at:
            raise PromotionLockLost(
                f"promotion lease {self.name} expired or was taken over (now {held[0] if held else 'free'}); "
                "nothing was changed: retry, or raise registry.lock_lease_s"
            )

    def release(self) -> None:
        client = client_for(self.reg.mlflow)
        try:
            held = _holder(client, self.name)
            if held is not None and held[0] == self.owner:
                _delete_quietly(client, self.name)
        except MlflowException:  # the server is gone: the lease expires by itself
            pass


def acquire_lease(reg: RegistryTarget, timeout_s: float) -> Lease:
    """Take the registry lease, waiting up to `timeout_s` and taking over an expired one."""
    client = client_for(reg.mlflow)
    name, lease_s = lock_model_name(reg), reg.settings.lock_lease_s
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline, delay = time.monotonic() + timeout_s, 0.05
    while True:
        expires = _try_create(client, name, owner, lease_s)
        if expires is not None:
            return Lease(reg, name, owner, expires)
        held = _holder(client, name)
        if held is not None and held[1] <= time.time():
            _take_over_expired(client, name, held[0], lease_s)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            who = (
                f"held by {held[0]} until {datetime.fromtimestamp(held[1], UTC).isoformat(timespec='seconds')}"
                if held
                else "busy"
            )
            raise PromotionLockTimeout(
                f"promotion lease {name} in {reg.mlflow.uri} {who}: another promotion held it for more than "
                f"{timeout_s:g}s; retry later or raise registry.lock_timeout_s"
            )
        time.sleep(min(left, delay * random.uniform(0.5, 1.5)))
        delay = min(delay * 2, 1.0)


@contextmanager
def promotion_lock(reg: RegistryTarget, timeout_s: float | None = None) -> Iterator[Lease]:
    """Serialise champion decisions across threads, processes and hosts sharing a registry, through any server.

    The lease in the registry is the mutex; with a local sqlite store a file lock is taken first so local
    threads queue on flock instead of polling. `timeout_s` defaults to registry.lock_timeout_s.
    """
    wait = reg.settings.lock_timeout_s if timeout_s is None else timeout_s
    path = lock_path(reg)
    lock = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=wait, thread_local=False, is_singleton=False)
        try:
            lock.acquire()
        except Timeout:
            raise PromotionLockTimeout(
                f"promotion lock {path} held by another promotion for more than {wait:g}s; retry later or raise "
                "registry.lock_timeout_s"
            ) from None
    try:
        lease = acquire_lease(reg, wait)
        try:
            yield lease
        finally:
            lease.release()
    finally:
        if lock is not None:
            lock.release()
