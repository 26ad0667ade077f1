"""textclf.registry / audit / model_card: the gate's rules, the audit stack, the lock, the card, refusals."""

from __future__ import annotations

import threading

import pytest

from textclf import audit
from textclf.audit import DecisionRecord, champion_stack, promotion_lock
from textclf.config import EvalConfig, build_config
from textclf.gate import gate_decision, threshold_failures
from textclf.model_card import UNKNOWN, CardInputs, render_model_card
from textclf.promotion import PromotionRefused, promote_version, rollback

GOOD = {"accuracy": 0.90, "macro_f1": 0.89, "latency_p95_ms": 12.0}


def test_thresholds_each_reported():
    cfg = EvalConfig(min_accuracy=0.8, min_macro_f1=0.8, max_latency_p95_ms=10)
    failed = threshold_failures({"accuracy": 0.7, "macro_f1": 0.6, "latency_p95_ms": 11.0}, cfg)
    assert len(failed) == 3
    assert "accuracy 0.7000 < min_accuracy 0.8" in failed[0]
    assert "latency_p95 11.0ms > max_latency_p95_ms 10" in failed[2]
    assert threshold_failures(GOOD, EvalConfig(max_latency_p95_ms=None)) == []
    assert "missing" in threshold_failures({"accuracy": 1, "macro_f1": 1}, EvalConfig())[0]


def test_gate_rules():
    cfg = EvalConfig(min_accuracy=0.5, promotion_metric="macro_f1", min_improvement=0.01)
    assert gate_decision(GOOD, None, cfg) == (True, "passes thresholds; no champion yet")
    promoted, reason = gate_decision(GOOD, {**GOOD, "macro_f1": 0.885}, cfg, "3")
    assert not promoted and "+0.0050 < required margin 0.01" in reason and "champion v3" in reason
    promoted, reason = gate_decision(GOOD, {**GOOD, "macro_f1": 0.85}, cfg, "3")
    assert promoted and "+0.0400" in reason
    promoted, reason = gate_decision({**GOOD, "accuracy": 0.4}, None, cfg)
    assert not promoted and reason.startswith("fails thresholds: accuracy 0.4000")


def _rec(action, promoted, version):
    return DecisionRecord("m", action, promoted, version, None, None, "r", "test")


def test_champion_stack_push_pop():
    records = [
        _rec("gate", True, "1"),
        _rec("gate", False, "2"),
        _rec("gate", True, "3"),
        _rec("promote", True, "4"),
        _rec("rollback", True, "3"),
        _rec("rollback", True, "1"),
    ]
    assert champion_stack(records) == ["1"]
    assert champion_stack(records[:4]) == ["1", "3", "4"]


def test_lock_serialises_threads(tmp_path):
    cfg = build_config({"output_dir": str(tmp_path), "registry": {"lock_timeout_s": 20}}).registry_target()
    assert audit.lock_path(cfg).name == "mlflow.db.promote.lock"
    inside, overlaps = [], []
    gate = threading.Barrier(4, timeout=20)

    def worker():
        gate.wait()
        for _ in range(5):
            with promotion_lock(cfg):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []


def test_lock_times_out_with_clear_error(tmp_path):
    cfg = build_config({"output_dir": str(tmp_path), "registry": {"lock_timeout_s": 0.2}}).registry_target()
    with promotion_lock(cfg):
        errors = []
        t = threading.Thread(target=lambda: errors.append(_try_lock(cfg)))
        t.start()
        t.join(timeout=10)
    assert errors and "held by another promotion" in errors[0]


def _try_lock(cfg):
    try:
        with promotion_lock(cfg):
            return "acquired"
    except audit.PromotionLockTimeout as err:
        return str(err)


def test_model_card_renders_known_and_unknown():
    card = render_model_card(
        CardInputs(
            name="m",
            version="2",
            run_id="r1",
            created="2026-01-01",
            labels=["neg", "pos"],
            metrics={"accuracy": 0.9, "ece": 0.05},
            per_class={"neg": {"precision": 1, "recall": 0.8, "f1": 0.89, "support": 5}},
            tags={"git.commit": "abc123", "data.fingerprint": "fp9"},
            params={"data.source": "reviews.csv", "train.epochs": "1.0", "augment.enabled": "True", "augment.synonym_p": "0.1"},
        )
    )
    assert "# Model card: `m` version 2" in card
    assert "`abc123`" in card and "| `data.fingerprint` | fp9 |" in card
    assert "Augmentation **was used**" in card and "synonym_p" in card
    assert "expected calibration error of 0.050" in card
    assert "| neg | 1.0000 | 0.8000 | 0.8900 | 5 |" in card
    teacher = card.split("## Teacher / student")[1].split("##")[0]
    assert UNKNOWN in teacher


def test_human_actions_refuse_unknown_versions(tmp_path):
    cfg = build_config({"output_dir": str(tmp_path)})
    reg = cfg.registry_target()
    with pytest.raises(PromotionRefused, match="version 7 of model textclf does not exist"):
        promote_version(reg, cfg.evaluate, "7", "because")
    with pytest.raises(PromotionRefused, match="reason is required"):
        promote_version(reg, cfg.evaluate, "7", "  ")
    with pytest.raises(PromotionRefused, match="no @champion; nothing to roll back"):
        rollback(reg, cfg.evaluate, "bad model")


def test_lease_in_the_registry_excludes_expires_and_is_taken_over(tmp_path):
    """The mutex that works through any server: a registered model created atomically, with an owner and expiry."""
    from mlflow.tracking import MlflowClient

    reg = build_config({"output_dir": str(tmp_path), "registry": {"lock_lease_s": 1.0}}).registry_target()
    client = MlflowClient(tracking_uri=reg.mlflow.uri, registry_uri=reg.mlflow.uri)
    held = audit.acquire_lease(reg, timeout_s=1)  # never released: a holder killed with -9
    assert client.get_registered_model("textclf.promotion-lock").tags[audit.OWNER_TAG] == held.owner
    held.check()
    with pytest.raises(audit.PromotionLockTimeout, match=f"held by {held.owner}"):
        audit.acquire_lease(reg, timeout_s=0.2)
    taker = audit.acquire_lease(reg, timeout_s=10)  # waits for the expiry, then takes over
    assert taker.owner != held.owner
    with pytest.raises(audit.PromotionLockLost, match="expired or was taken over"):
        held.check()
    held.release()  # the old holder's release leaves the new lease alone
    assert client.get_registered_model("textclf.promotion-lock").tags[audit.OWNER_TAG] == taker.owner
    taker.release()
    assert client.search_registered_models() == []  # released; no takeover token left behind
