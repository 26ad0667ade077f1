"""The promotion gate's rules, pure: absolute thresholds, then the margin over the champion measured now,
and whether the champion can be measured at all on the data's label space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textclf.config import EvalConfig
from textclf.errors import TextclfError

GATE_KEYS = ("accuracy", "macro_f1", "latency_p95_ms")


def thresholds(cfg: EvalConfig) -> dict:
    return {
        "min_accuracy": cfg.min_accuracy,
        "min_macro_f1": cfg.min_macro_f1,
        "max_latency_p95_ms": cfg.max_latency_p95_ms,
        "promotion_metric": cfg.promotion_metric,
        "min_improvement": cfg.min_improvement,
    }


def threshold_failures(metrics: dict[str, float], cfg: EvalConfig) -> list[str]:
    """The absolute thresholds `metrics` (un-prefixed) fail, as readable reasons."""
    failed = []
    if metrics.get("accuracy", 0.0) < cfg.min_accuracy:
        failed.append(f"accuracy {metrics.get('accuracy', 0.0):.4f} < min_accuracy {cfg.min_accuracy}")
    if metrics.get("macro_f1", 0.0) < cfg.min_macro_f1:
        failed.append(f"macro_f1 {metrics.get('macro_f1', 0.0):.4f} < min_macro_f1 {cfg.min_macro_f1}")
    latency = metrics.get("latency_p95_ms")
    if cfg.max_latency_p95_ms is not None and (latency is None or latency > cfg.max_latency_p95_ms):
        shown = "missing" if latency is None else f"{latency:.1f}ms"
        failed.append(f"latency_p95 {shown} > max_latency_p95_ms {cfg.max_latency_p95_ms:g}")
    return failed


def gate_decision(
    candidate: dict[str, float], champion: dict[str, float] | None, cfg: EvalConfig, champion_version: str | None = None
) -> tuple[bool, str]:
    """(promote?, reason): absolute thresholds first, then the margin over the champion measured now."""
    failed = threshold_failures(candidate, cfg)
    if failed:
        return False, "fails thresholds: " + "; ".join(failed)
    if champion is None:
        return True, "passes thresholds; no champion yet"
    key = cfg.promotion_metric
    gain = candidate.get(key, 0.0) - champion.get(key, 0.0)
    versus = (
        f"{key} {candidate.get(key, 0.0):.4f} vs champion v{champion_version} {champion.get(key, 0.0):.4f} "
        f"(re-evaluated now): {gain:+.4f}"
    )
    if gain < cfg.min_improvement:
        return False, f"{versus} < required margin {cfg.min_improvement:g}"
    return True, f"passes thresholds; {versus} >= required margin {cfg.min_improvement:g}"


def gate_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in sorted(metrics) if not k.startswith("texts_per_s")}


@dataclass(frozen=True)
class LabelVerdict:
    """How a model's classes (its config's id2label, in id order) relate to the data's (ClassLabel names)."""

    model: list[str]
    data: list[str]

    @property
    def kind(self) -> Literal["same", "reordered", "changed"]:
        if self.model == self.data:
            return "same"
        if sorted(self.model) == sorted(self.data) and len(set(self.data)) == len(self.data):
            return "reordered"
        return "changed"

    @property
    def comparable(self) -> bool:
        return self.kind != "changed"

    def column_order(self) -> list[int]:
        """For each data id, the model's column of that class: probs[:, column_order()] is in data id order."""
        if not self.comparable:
            raise LabelSetChanged(self)
        return [self.model.index(name) for name in self.data]

    def note(self) -> str:
        """The verdict as the decision's reason states it ('' when the lists are equal)."""
        both = f"(champion: {self.model}, data: {self.data})"
        if self.kind == "reordered":
            return f"label order differed: champion's predictions mapped to the data's ids by name {both}"
        if self.kind == "changed":
            return f"label set changed: champion not comparable {both}"
        return ""


class LabelSetChanged(TextclfError):
    """A model cannot be scored on data whose label set differs from its own."""

    def __init__(self, verdict: LabelVerdict):
        super().__init__(
            f"the model's classes {verdict.model} are not the data's {verdict.data}: "
            "it cannot be scored on this data (a class was added or removed)"
        )
        self.verdict = verdict


def compare_labels(model: list[str], data: list[str]) -> LabelVerdict:
    return LabelVerdict(list(model), list(data))


def label_aware_decision(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    labels: LabelVerdict | None,
    cfg: EvalConfig,
    on_label_change: Literal["wait", "promote"],
    champion_version: str | None = None,
) -> tuple[bool, str]:
    """(promote?, reason) given how the champion's classes relate to the data's (None: no champion).

    Same classes: `gate_decision`. Reordered: the same, on the champion's predictions mapped by name (the reason
    says so). Changed: the champion is not comparable, so only the absolute thresholds gate, and a candidate that
    passes them is promoted only if `on_label_change` is 'promote' (else a person decides).
    """
    if labels is None or labels.kind == "same":
        return gate_decision(candidate, champion, cfg, champion_version)
    if labels.comparable:
        promoted, reason = gate_decision(candidate, champion, cfg, champion_version)
        return promoted, f"{labels.note()}; {reason}"
    head = f"{labels.note()}; gated on absolute thresholds only"
    failed = threshold_failures(candidate, cfg)
    if failed:
        return False, f"{head}; fails thresholds: " + "; ".join(failed)
    if on_label_change == "promote":
        return True, f"{head}; passes thresholds; promoted (registry.on_label_change=promote)"
    return False, (
        f"{head}; passes thresholds; not promoted (registry.on_label_change=wait): the champion stays until "
        "a person runs `textclf registry promote VERSION --reason ...`"
    )
