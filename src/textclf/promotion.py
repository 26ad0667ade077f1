"""Champion decisions: the gate against the re-evaluated champion, human promote/rollback, each under the
promotion lock with an audit record written first (audit.py), verify, and the register-then-gate step the
pipeline runs."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException

from textclf import audit
from textclf.audit import DecisionRecord, Lease, PromotionLockTimeout, promotion_lock
from textclf.config import EvalConfig, RegistryTarget
from textclf.errors import TextclfError
from textclf.evaluate import EvalReport, evaluate_classifier
from textclf.gate import (
    LabelSetChanged,
    LabelVerdict,
    compare_labels,
    gate_metrics,
    label_aware_decision,
    threshold_failures,
    thresholds,
)
from textclf.registry import (
    RegisteredVersion,
    attach_evaluation,
    current_champion,
    load_registered,
    model_version_url,
    recorded_metrics,
    register_model,
    version_of,
)
from textclf.settings import env_value
from textclf.tracking import client_for

PAUSE_POINTS = ("registered", "pending", "alias-moved", "before-commit")


class PromotionRefused(TextclfError):
    """A human promotion or rollback that cannot be done as asked."""


class UnauditedMoves(TextclfError):
    """`registry verify` found alias moves without a committed audit record."""

    exit_code = 1


@dataclass
class PromotionOutcome:
    """What the promote stage did: the registered version, its card, and the gate's audited decision."""

    name: str
    version: str
    uri: str
    model_card: str
    promoted: bool
    reason: str
    previous_champion: str | None
    champion: str | None
    audit_run_id: str
    trigger: str
    version_url: str | None = None  # the version's page in the MLflow UI of a tracking server

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_version(reg: RegistryTarget, gate: EvalConfig, version: str, data_dir: str | Path, batch_size: int) -> EvalReport:
    """Download a registered version and evaluate it now on `data_dir`'s test split (same code as the candidate).

    Its weights load from safetensors (`registry.load_registered`): the version's code is never run."""
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, _ = load_registered(reg.mlflow, f"models:/{reg.name}/{version}", Path(tmp))
        return evaluate_classifier(model, tokenizer, data_dir, "test", batch_size=batch_size, settings=gate)


def pause_at(point: str) -> None:
    """Test hook for the kill -9 tests: with TEXTCLF_PROMOTION_PAUSE_AT=<point> the promotion writes its pid to
    TEXTCLF_PROMOTION_PAUSE_FILE and waits there (up to 10 minutes) to be killed. Unset in production."""
    if env_value("TEXTCLF_PROMOTION_PAUSE_AT") != point:
        return
    marker = env_value("TEXTCLF_PROMOTION_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {point}\n")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.2)


def reconcile(reg: RegistryTarget, records: list[DecisionRecord] | None = None) -> list[DecisionRecord]:
    """Under the lock: settle every pending record of `reg.name` against the live alias (audit.reconciled_state)."""
    records = audit.read_history(reg, reg.name) if records is None else records
    if any(r.state == "pending" for r in records):
        live = version_of(current_champion(reg))
        for i, record in enumerate(records):
            if record.state == "pending":
                audit.mark_state(reg, record, audit.reconciled_state(records, i, live), reconciled=True)
    return records


def _abort(reg: RegistryTarget, record: DecisionRecord, expected: str | None) -> None:
    """Put the alias back and mark the record aborted; what fails here stays pending and is reconciled later."""
    client = client_for(reg.mlflow)
    try:
        if record.promoted and expected:
            client.set_registered_model_alias(reg.name, reg.alias, expected)
        elif record.promoted and version_of(current_champion(reg)) is not None:
            client.delete_registered_model_alias(reg.name, reg.alias)
    except Exception:  # noqa: BLE001 - the record stays pending; reconcile judges it by the alias
        return
    try:
        audit.mark_state(reg, record, "aborted")
    except Exception:  # noqa: BLE001 - as above
        return


def _set_champion(reg: RegistryTarget, record: DecisionRecord, expected: str | None, lease: Lease) -> DecisionRecord:
    """Under the lock, audit first: the record as pending, then the alias (compare-and-set), then commit.

    Any exception (a BaseException too: a cancellation) before the commit puts the alias back and aborts the
    record; a kill -9 leaves it pending, and the next promotion, `history` or `verify` reconciles it."""
    client = client_for(reg.mlflow)
    name, alias = reg.name, reg.alias
    reconcile(reg)
    if version_of(current_champion(reg)) != expected:  # re-check right before setting
        raise PromotionRefused(f"champion of {name} changed concurrently (expected {expected}); retry")
    lease.check()
    record = audit.append_record(reg, record, state="pending")
    pause_at("pending")
    try:
        if record.promoted:
            lease.check()
            client.set_registered_model_alias(name, alias, record.candidate_version)
            pause_at("alias-moved")
            if version_of(current_champion(reg)) != record.candidate_version:  # a writer without the lock won
                raise PromotionRefused(f"champion of {name} was set by another writer during promotion; retry")
        pause_at("before-commit")
        audit.mark_state(reg, record, "committed")
    except BaseException:
        _abort(reg, record, expected)
        raise
    tags = {
        "promotion.decision": record.decision,
        "promotion.reason": record.reason[:5000],
        "promotion.time": record.time,
        "promotion.trigger": record.trigger,
        "promotion.previous_champion": record.previous_champion or "",
        "promotion.audit_run_id": record.audit_run_id,
        "promotion.seq": str(record.seq),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, record.candidate_version, key, value)
    return record


def measure_champion(
    reg: RegistryTarget, gate: EvalConfig, version: str, data_dir: str | Path, batch_size: int
) -> tuple[dict[str, float], LabelVerdict]:
    """The champion's gate metrics measured now on `data_dir`, with how its classes relate to the data's.

    Scored by class name (evaluate.predict_split); a champion with another label set cannot be scored: no metrics.
    """
    try:
        measured = evaluate_version(reg, gate, version, data_dir, batch_size)
    except LabelSetChanged as changed:
        return {}, changed.verdict
    return gate_metrics(measured.metrics), compare_labels(measured.model_labels or measured.labels, measured.labels)


def promote_if_better(
    reg: RegistryTarget,
    gate: EvalConfig,
    candidate: RegisteredVersion,
    report: EvalReport,
    data_dir: str | Path,
    trigger: str,
    actor: str = "pipeline",
    candidate_run_id: str | None = None,
    *,
    batch_size: int,
) -> DecisionRecord:
    """The gate: re-evaluate the champion on the same test split, decide, compare-and-set, audit.

    The champion is evaluated outside the lock (slow); the lock only covers re-check + set + record.
    If the champion changed meanwhile, evaluate the new one (up to registry.cas_retries times).
    Classes are compared by name: a champion with another label set is not comparable, and the candidate is
    gated on the absolute thresholds, promoted only if `registry.on_label_change` is 'promote'.
    """
    candidate_metrics = gate_metrics(report.metrics)
    retries = reg.settings.cas_retries
    limits = {**thresholds(gate), "on_label_change": reg.settings.on_label_change}
    for _ in range(retries + 1):
        seen = version_of(current_champion(reg))
        champion: dict[str, float] | None = None
        labels: LabelVerdict | None = None
        if seen is not None and seen != candidate.version:
            champion, labels = measure_champion(reg, gate, seen, data_dir, batch_size)
        promoted, reason = label_aware_decision(candidate_metrics, champion, labels, gate, reg.settings.on_label_change, seen)
        record = DecisionRecord(
            model_name=candidate.name,
            action="gate",
            promoted=promoted,
            candidate_version=candidate.version,
            previous_champion=seen,
            champion_after=candidate.version if promoted else seen,
            reason=reason,
            trigger=trigger,
            actor=actor,
            candidate_metrics=candidate_metrics,
            champion_metrics=champion or {},
            thresholds=limits,
            candidate_run_id=candidate_run_id,
            label_verdict=labels.kind if labels else "",
            champion_labels=labels.model if labels else [],
            data_labels=labels.data if labels else list(report.labels),
        )
        with promotion_lock(reg) as lease:
            if version_of(current_champion(reg)) != seen:
                continue  # lost the race while evaluating: compare against the new champion
            return _set_champion(reg, record, seen, lease)
    with promotion_lock(reg) as lease:
        now = version_of(current_champion(reg))
        record = DecisionRecord(
            model_name=candidate.name,
            action="gate",
            promoted=False,
            candidate_version=candidate.version,
            previous_champion=now,
            champion_after=now,
            trigger=trigger,
            actor=actor,
            reason=f"champion changed {retries + 1} times while this candidate was compared; "
            "not promoted (rerun to compare again)",
            candidate_metrics=candidate_metrics,
            thresholds=thresholds(gate),
            candidate_run_id=candidate_run_id,
        )
        return _set_champion(reg, record, now, lease)


def evaluated_version(reg: RegistryTarget, version: str):
    """The version, if it exists and carries an evaluation; else a one-line PromotionRefused."""
    name = reg.name
    try:
        mv = client_for(reg.mlflow).get_model_version(name, str(version))
    except MlflowException:
        raise PromotionRefused(
            f"version {version} of model {name} does not exist in {reg.mlflow.uri}; "
            f"list versions with `textclf registry history {name}`"
        ) from None
    if "eval.report" not in (mv.tags or {}):
        raise PromotionRefused(
            f"version {version} of model {name} has no evaluation (no eval.report tag); "
            "only versions registered by the pipeline with a test evaluation can serve"
        )
    return mv


def promote_version(
    reg: RegistryTarget, gate: EvalConfig, version: str, reason: str, trigger: str = "cli", actor: str = "unknown"
) -> DecisionRecord:
    """A person makes `version` the champion (overriding the gate), with a reason; audited."""
    if not reason.strip():
        raise PromotionRefused("a reason is required: --reason 'why this version should serve'")
    mv = evaluated_version(reg, version)
    with promotion_lock(reg) as lease:
        current = current_champion(reg)
        if version_of(current) == str(mv.version):
            raise PromotionRefused(f"version {version} is already @{reg.alias}")
        failed = threshold_failures(recorded_metrics(mv), gate)
        note = f" (overrides failed thresholds: {'; '.join(failed)})" if failed else ""
        record = DecisionRecord(
            model_name=reg.name,
            action="promote",
            promoted=True,
            candidate_version=str(mv.version),
            previous_champion=version_of(current),
            champion_after=str(mv.version),
            reason=reason.strip() + note,
            trigger=trigger,
            actor=actor,
            candidate_metrics=recorded_metrics(mv),
            champion_metrics=recorded_metrics(current) if current else {},
            thresholds=thresholds(gate),
            candidate_run_id=mv.run_id,
        )
        return _set_champion(reg, record, version_of(current), lease)


def rollback(reg: RegistryTarget, gate: EvalConfig, reason: str, trigger: str = "cli", actor: str = "unknown") -> DecisionRecord:
    """Restore the champion that served before the current one (per the audit history); audited."""
    if not reason.strip():
        raise PromotionRefused("a reason is required: --reason 'what went wrong with the current champion'")
    name = reg.name
    with promotion_lock(reg) as lease:
        current = version_of(current_champion(reg))
        stack = audit.champion_stack(reconcile(reg))
        if current is None:
            raise PromotionRefused(f"model {name} has no @{reg.alias}; nothing to roll back")
        if not stack or stack[-1] != current:
            raise PromotionRefused(
                f"@{reg.alias} (v{current}) was not set through textclf, so "
                "there is no audited predecessor; use `textclf registry promote VERSION`"
            )
        if len(stack) < 2:
            raise PromotionRefused(f"v{current} is the first audited champion of {name}; nothing to roll back to")
        target = evaluated_version(reg, stack[-2])
        mv_current = client_for(reg.mlflow).get_model_version(name, current)
        record = DecisionRecord(
            model_name=name,
            action="rollback",
            promoted=True,
            candidate_version=str(target.version),
            previous_champion=current,
            champion_after=str(target.version),
            reason=reason.strip(),
            trigger=trigger,
            actor=actor,
            candidate_metrics=recorded_metrics(target),
            champion_metrics=recorded_metrics(mv_current),
            thresholds=thresholds(gate),
            candidate_run_id=target.run_id,
        )
        return _set_champion(reg, record, current, lease)


def _for_model(reg: RegistryTarget, name: str | None) -> RegistryTarget:
    if not name or name == reg.name:
        return reg
    return RegistryTarget(reg.mlflow, reg.settings.model_copy(update={"model_name": name}))


def history(reg: RegistryTarget, name: str | None = None) -> list[DecisionRecord]:
    """Every decision about `name`, oldest first; pending records are reconciled if no promotion holds the lock
    (one that does may be between its record and its alias move: its record is shown pending)."""
    target = _for_model(reg, name)
    records = audit.read_history(target, target.name)
    if any(r.state == "pending" for r in records):
        try:
            with promotion_lock(target, timeout_s=0):
                return reconcile(target)
        except PromotionLockTimeout:
            pass
    return records


@dataclass
class Verification:
    """What `registry verify` found: the live champion, the records (reconciled) and one line per problem."""

    name: str
    champion: str | None
    records: list[DecisionRecord]
    reconciled: list[DecisionRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verify(reg: RegistryTarget, name: str | None = None) -> Verification:
    """Every move of the alias must have a committed record: the live alias is the last committed record's
    champion_after, each committed record found the champion its predecessor left, and seq runs 1..n."""
    target = _for_model(reg, name)
    with promotion_lock(target):
        before = audit.read_history(target, target.name)
        pending = {r.seq for r in before if r.state == "pending"}
        records = reconcile(target, before)
        live = version_of(current_champion(target))
    found = Verification(target.name, live, records, [r for r in records if r.seq in pending])
    seqs = [r.seq for r in records]
    if seqs != list(range(1, len(seqs) + 1)):
        found.problems.append(f"audit seq of {target.name} not 1..{len(seqs)} without gaps or repeats: {seqs}")
    left: str | None = None
    last_seq = 0
    for record in records:
        if record.state != "committed":
            continue
        if record.previous_champion != left:
            found.problems.append(
                f"before seq {record.seq}: it found @{target.alias} at {_v(record.previous_champion)}, "
                f"the committed record before it left {_v(left)}"
            )
        left, last_seq = record.champion_after, record.seq
    if live != left:
        after = f"the last committed record (seq {last_seq}) left {_v(left)}" if last_seq else "no committed record moved it"
        found.problems.append(f"@{target.alias} of {target.name} is {_v(live)} but {after}")
    return found


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def register_and_promote(
    reg: RegistryTarget,
    gate: EvalConfig,
    run_id: str,
    model_dir: str | Path,
    report: EvalReport,
    tags: dict[str, str],
    data_dir: str | Path,
    trigger: str,
    actor: str = "pipeline",
    eval_dir: Path | None = None,
    *,
    batch_size: int,
) -> PromotionOutcome:
    """Register the trained model with its lineage, evidence and card, then run the gate on `data_dir`.

    Idempotent: a retry (of the task or of the flow run) finds the version this run registered and the gate
    decision already recorded for it, and returns them: one version and one decision per run and name.
    """
    version = register_model(reg, run_id, model_dir, tags)
    card = attach_evaluation(reg, version, report, run_id, eval_dir)
    pause_at("registered")
    decided = [
        r
        for r in history(reg, version.name)
        if r.action == "gate" and r.candidate_version == version.version and r.state != "aborted"
    ]
    if decided:
        record = decided[0]
    else:
        record = promote_if_better(
            reg, gate, version, report, data_dir, trigger, actor, candidate_run_id=run_id, batch_size=batch_size
        )
    return PromotionOutcome(
        name=version.name,
        version=version.version,
        uri=version.uri,
        model_card=card,
        promoted=record.promoted,
        reason=record.reason,
        previous_champion=record.previous_champion,
        champion=record.champion_after,
        audit_run_id=record.audit_run_id,
        trigger=record.trigger,
        version_url=model_version_url(reg.mlflow, version.name, version.version),
    )


def record_json(records: list[DecisionRecord]) -> str:
    return "\n".join(json.dumps({**r.to_dict(), "decision": r.decision}, sort_keys=True) for r in records)
