"""The retrain policy (monitor.*): which findings crossed a bound, whether they call for a retrain, and one line
that says so with the measured scores (the reason a Skipped run ends with)."""

from __future__ import annotations

from textclf.config import MonitorConfig
from textclf.monitor.result import MonitorResult, PolicyDecision


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def findings_of(result: MonitorResult, settings: MonitorConfig) -> list[str]:
    found = []
    if result.input_drift:
        found.append("input_drift")
    if result.prediction.drifted:
        found.append("prediction_drift")
    if result.decay is not None and result.decay.decayed:
        found.append("decay")
    if result.decay is not None and result.decay.label_test.drifted:
        found.append("label_shift")
    if result.labelled_rows >= settings.min_labelled_rows:
        found.append("labelled_rows")
    return found


def score_line(result: MonitorResult, settings: MonitorConfig) -> str:
    """The measured scores next to their bounds, in the order the policy reads them."""
    emb = result.embedding
    parts = [f"embedding MMD p={_p(emb.p_value)} (drift below {settings.embedding_p_value})"]
    worst = max(result.descriptors, key=lambda d: (d.drifted, d.effect), default=None)
    if worst is not None:
        parts.append(
            f"descriptors: {sum(d.drifted for d in result.descriptors)} of {len(result.descriptors)} drifted "
            f"(largest {worst.name} effect {worst.effect:.3f}, p={_p(worst.p_value)})"
        )
    pred = result.prediction
    parts.append(
        f"predicted labels TVD {pred.label_test.effect:.3f} p={_p(pred.label_test.p_value)}, confidence KS "
        f"{pred.confidence_test.effect:.3f} p={_p(pred.confidence_test.p_value)}"
    )
    decay = result.decay
    if decay is not None:
        low, high = decay.accuracy_ci
        registered = f" vs registered {decay.registered_accuracy:.3f}" if decay.registered_accuracy is not None else ""
        parts.append(
            f"accuracy {decay.accuracy:.3f} [{low:.3f}, {high:.3f}]{registered} (decay: upper end more than "
            f"{settings.max_accuracy_drop} below), macro-F1 {decay.macro_f1:.3f}, labels TVD {decay.label_test.effect:.3f} "
            f"p={_p(decay.label_test.p_value)}"
        )
    parts.append(f"{result.labelled_rows} labelled row(s) (retrain from {settings.min_labelled_rows})")
    return "; ".join(parts)


def decide(result: MonitorResult, settings: MonitorConfig) -> PolicyDecision:
    found = findings_of(result, settings)
    acting = [f for f in found if f in settings.retrain_on]
    scores = score_line(result, settings)
    aside = f", {result.seen_rows} more set aside: trained on" if result.seen_rows else ""
    where = f"{result.model} on {result.drop} ({result.rows} rows{aside})"
    if acting:
        return PolicyDecision(True, found, f"retrain: {', '.join(acting)} for {where}: {scores}")
    ignored = f" ({', '.join(found)} found, not in monitor.retrain_on)" if found else ""
    return PolicyDecision(False, found, f"skipped: no monitoring bound crossed{ignored} for {where}: {scores}")
