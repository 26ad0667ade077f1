"""The label-space rules of the gate: classes are compared by name, never by id."""

import numpy as np
import pytest

from textclf.config import EvalConfig
from textclf.gate import LabelSetChanged, compare_labels, gate_decision, label_aware_decision

CFG = EvalConfig(min_accuracy=0.7, min_macro_f1=0.6, max_latency_p95_ms=None, min_improvement=0.01)
GOOD = {"accuracy": 0.9, "macro_f1": 0.88}
CHAMPION = {"accuracy": 0.85, "macro_f1": 0.8}
TWO = ["negative", "positive"]
THREE = ["mixed", "negative", "positive"]  # 'mixed' sorts first: every old id shifts


def test_same_order_is_compared_as_before():
    verdict = compare_labels(TWO, TWO)
    assert verdict.kind == "same" and verdict.comparable and verdict.column_order() == [0, 1] and verdict.note() == ""
    for champion in (CHAMPION, {**GOOD, "macro_f1": 0.875}):
        assert label_aware_decision(GOOD, champion, verdict, CFG, "wait", "3") == gate_decision(GOOD, champion, CFG, "3")
    assert label_aware_decision(GOOD, None, None, CFG, "wait") == (True, "passes thresholds; no champion yet")


def test_another_order_is_permuted_by_name_and_said():
    verdict = compare_labels(["positive", "mixed", "negative"], THREE)
    assert verdict.kind == "reordered" and verdict.comparable
    order = verdict.column_order()
    assert order == [1, 2, 0]
    # The champion's columns (its own id order) re-ordered into the data's: each column keeps its class.
    champion_probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # positive, mixed, negative
    in_data_order = champion_probs[:, order]  # mixed, negative, positive
    assert [THREE[i] for i in in_data_order.argmax(axis=1)] == ["positive", "negative"]

    promoted, reason = label_aware_decision(GOOD, CHAMPION, verdict, CFG, "wait", "3")
    assert promoted and reason.startswith("label order differed")
    assert "champion: ['positive', 'mixed', 'negative'], data: ['mixed', 'negative', 'positive']" in reason
    assert reason.endswith(gate_decision(GOOD, CHAMPION, CFG, "3")[1])
    promoted, reason = label_aware_decision(GOOD, {**GOOD, "macro_f1": 0.95}, verdict, CFG, "promote", "3")
    assert not promoted and "label order differed" in reason and "< required margin" in reason  # the margin still gates


@pytest.mark.parametrize(
    ("champion", "data"),
    [(TWO, THREE), (THREE, TWO), (TWO, ["negative", "neutral"]), (TWO, ["negative", "negative"])],
    ids=["added", "removed", "renamed", "duplicated"],
)
def test_a_changed_set_is_not_comparable(champion, data):
    verdict = compare_labels(champion, data)
    assert verdict.kind == "changed" and not verdict.comparable
    assert verdict.note() == f"label set changed: champion not comparable (champion: {champion}, data: {data})"
    with pytest.raises(LabelSetChanged) as raised:  # never an IndexError
        verdict.column_order()
    assert raised.value.verdict == verdict and str(champion) in str(raised.value)


@pytest.mark.parametrize("data", [THREE, ["negative"]], ids=["added", "removed"])
def test_a_changed_set_gates_on_thresholds_and_waits_unless_told(data):
    verdict = compare_labels(TWO, data)
    # The champion's metrics (had they been measured) play no part: a much better champion does not block.
    strong = {"accuracy": 1.0, "macro_f1": 1.0}

    promoted, reason = label_aware_decision(GOOD, strong, verdict, CFG, "wait", "3")
    assert not promoted
    assert reason.startswith(f"label set changed: champion not comparable (champion: {TWO}, data: {data})")
    assert "passes thresholds" in reason and "on_label_change=wait" in reason and "textclf registry promote" in reason

    promoted, reason = label_aware_decision(GOOD, strong, verdict, CFG, "promote", "3")
    assert promoted and reason.startswith("label set changed") and "on_label_change=promote" in reason

    bad = {"accuracy": 0.5, "macro_f1": 0.4}
    for choice in ("wait", "promote"):
        promoted, reason = label_aware_decision(bad, None, verdict, CFG, choice, "3")
        assert not promoted and "label set changed" in reason and "fails thresholds: accuracy 0.5000 < min_accuracy 0.7" in reason
