"""The retrain policy, decay measurement, the model card's monitoring section and the inbox watcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textclf.config import MonitorConfig
from textclf.model_card import with_monitoring
from textclf.monitor.core import Champion, Reference, measure_decay
from textclf.monitor.inbox import InboxWatcher
from textclf.monitor.policy import decide
from textclf.monitor.result import MonitorResult, PolicyDecision, PredictionDrift, TwoSampleTest


def _test(name: str, drifted: bool = False, p: float = 0.5) -> TwoSampleTest:
    return TwoSampleTest(name, "ks", 0.1, p, 0.05, 1.0, 1.0, 100, 100, drifted)


def _result(embedding_drift: bool = False, labelled: int = 0) -> MonitorResult:
    prediction = PredictionDrift(
        ["negative", "positive"], [0.5, 0.5], [0.5, 0.5], _test("predicted_label"), [0.5, 1.0], [1.0], [1.0], _test("confidence")
    )
    return MonitorResult(
        model_name="textclf",
        model_version="3",
        drop="drop.csv",
        rows=500,
        labelled_rows=labelled,
        descriptors=[_test("length_chars")],
        embedding=_test("embedding", embedding_drift, 0.001 if embedding_drift else 0.4),
        prediction=prediction,
        decay=None,
        decision=PolicyDecision(False, [], ""),
        started="2026-12-02T00:00:00+00:00",
    )


def test_the_policy_retrains_only_on_the_findings_it_is_told_to_act_on():
    settings = MonitorConfig()
    calm = decide(_result(), settings)
    assert not calm.retrain and calm.findings == [] and calm.reason.startswith("skipped: no monitoring bound crossed")
    assert "embedding MMD p=0.400" in calm.reason and "0 labelled row(s) (retrain from 2000)" in calm.reason

    drifted = decide(_result(embedding_drift=True), settings)
    assert drifted.retrain and drifted.findings == ["input_drift"] and drifted.reason.startswith("retrain: input_drift")

    ignored = decide(_result(embedding_drift=True), MonitorConfig(retrain_on=["decay"]))
    assert not ignored.retrain and "input_drift found, not in monitor.retrain_on" in ignored.reason

    enough = decide(_result(labelled=2000), settings)
    assert enough.retrain and enough.findings == ["labelled_rows"]


def _reference(train_counts: list[int]) -> Reference:
    return Reference({}, np.zeros((2, 2)), np.full((10, 2), 0.5), np.array(train_counts), {})


class _Model:
    class config:  # noqa: N801 - the shape of a Hugging Face config
        id2label = {0: "negative", 1: "positive"}
        num_labels = 2


def _champion(accuracy: float) -> Champion:
    return Champion("textclf", "3", Path("."), "run", Path("."), {"accuracy": accuracy, "macro_f1": accuracy})


def test_decay_is_an_interval_below_the_registered_score_not_a_noisy_point():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    right = rng.random(1000) < 0.85  # the champion gets 85% right, as registered
    predicted = np.where(right, y, 1 - y)
    probs = np.eye(2)[predicted] * 0.8 + 0.1
    names = ["negative", "positive"]
    settings = MonitorConfig()

    same = measure_decay(_reference([500, 500]), probs, [names[i] for i in y], _Model, _champion(0.85), settings)
    assert same is not None and not same.decayed and same.accuracy_ci[0] < 0.85 < same.accuracy_ci[1]

    flipped = np.where(rng.random(1000) < 0.2, 1 - y, y)  # 20% of the labels flipped: ~13 points lower
    worse = measure_decay(_reference([500, 500]), probs, [names[i] for i in flipped], _Model, _champion(0.85), settings)
    assert worse is not None and worse.decayed and 0.09 < worse.accuracy_drop < 0.18
    assert not worse.label_test.drifted  # the class shares did not move

    shifted = np.concatenate([np.zeros(900, dtype=int), np.ones(100, dtype=int)])
    skewed = measure_decay(_reference([500, 500]), probs, [names[i] for i in shifted], _Model, _champion(0.85), settings)
    assert skewed is not None and skewed.label_test.drifted and skewed.label_test.effect == pytest.approx(0.4)


def test_the_card_section_is_replaced_not_repeated():
    card = "# Model card\n\n## Teacher / student\nx\n\n## Monitoring\nNot monitored yet.\n\n## Evidence\n- a\n"
    tags = {"monitor.since": "2026-12-01T00:00:00+00:00", "monitor.runs": "1", "monitor.latest.decision": "skipped"}
    once = with_monitoring(card, tags)
    twice = with_monitoring(once, {**tags, "monitor.runs": "2", "monitor.latest.decision": "retrain"})
    assert twice.count("## Monitoring") == 1 and "| `decision` | retrain |" in twice and "skipped" not in twice
    assert "Monitored since 2026-12-01T00:00:00+00:00 (2 run(s)" in twice and twice.endswith("## Evidence\n- a\n")
    old = "# Model card\n\n## Evidence\n- a\n"  # a card from before monitoring existed
    assert with_monitoring(old, tags).index("## Monitoring") < with_monitoring(old, tags).index("## Evidence")


def test_the_inbox_reports_a_drop_once_when_it_stopped_growing(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.csv").write_text("text,label\nx,y\n")
    landed: list[Path] = []
    watcher = InboxWatcher(inbox, landed.append)
    assert watcher.poll() == []  # files there before watching are not new

    drop = inbox / "drop.csv"
    drop.write_text("text,label\n")
    (inbox / ".drop2.csv.incoming").write_text("a partial copy")
    (inbox / "notes.txt").write_text("not a drop")
    assert watcher.poll() == []  # seen once: it may still be growing
    with drop.open("a") as fh:
        fh.write("good,positive\n")
    assert watcher.poll() == []  # it grew: wait again
    assert watcher.poll() == [drop.resolve()] and landed == [drop.resolve()]
    assert watcher.poll() == [] and landed == [drop.resolve()]  # reported once
