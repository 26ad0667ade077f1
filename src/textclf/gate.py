"""The promotion gate's rules, pure: absolute thresholds, then the margin over the champion measured now."""

from __future__ import annotations

from textclf.config import EvalConfig

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
