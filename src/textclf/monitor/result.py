"""Typed results of one monitoring pass: what each test measured and what the policy decided."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TwoSampleTest:
    """One reference-vs-drop comparison: the test, its statistic and p-value, and each side's summary."""

    name: str  # "length_chars", "embedding", "predicted_label", "confidence", "label", ...
    method: str  # "ks", "mmd-permutation", "chi2", "fisher"
    statistic: float  # the test's own statistic (KS D, MMD^2, chi2)
    p_value: float
    effect: float  # a size the bounds read: KS D, total variation distance of shares, MMD^2
    reference: float  # the reference side's summary (mean or share), for reports
    current: float  # the drop's
    n_reference: int
    n_current: int
    drifted: bool = False  # set by the caller from the config's bounds

    def line(self) -> str:
        return (
            f"{self.name} {self.method} p={self.p_value:.3g} effect={self.effect:.3f} "
            f"(reference {self.reference:.3f}, drop {self.current:.3f})"
        )


@dataclass
class PredictionDrift:
    """The champion's predictions on the drop against its predictions on its test split."""

    labels: list[str]
    reference_share: list[float]  # predicted-label shares on the test split, in `labels` order
    current_share: list[float]
    label_test: TwoSampleTest
    confidence_edges: list[float]  # histogram bin edges of the top-class probability
    reference_confidence: list[float]  # shares per bin
    current_confidence: list[float]
    confidence_test: TwoSampleTest

    @property
    def drifted(self) -> bool:
        return self.label_test.drifted or self.confidence_test.drifted


@dataclass
class Decay:
    """The champion's scores on a labelled drop against its registered test scores, with bootstrap intervals."""

    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    macro_f1: float
    macro_f1_ci: tuple[float, float]
    registered_accuracy: float | None
    registered_macro_f1: float | None
    label_test: TwoSampleTest  # the drop's labels against the training split's (label shift)
    decayed: bool = False

    @property
    def accuracy_drop(self) -> float | None:
        return None if self.registered_accuracy is None else self.registered_accuracy - self.accuracy

    @property
    def macro_f1_drop(self) -> float | None:
        return None if self.registered_macro_f1 is None else self.registered_macro_f1 - self.macro_f1


@dataclass
class PolicyDecision:
    """Whether to retrain, the findings that decided it, and one line with the measured scores."""

    retrain: bool
    findings: list[str]  # "input_drift", "prediction_drift", "decay", "labelled_rows" that crossed a bound
    reason: str


@dataclass
class MonitorResult:
    model_name: str
    model_version: str
    drop: str  # what was judged: a path, or "rows new since <data version>"
    rows: int
    labelled_rows: int
    descriptors: list[TwoSampleTest]
    embedding: TwoSampleTest
    prediction: PredictionDrift
    decay: Decay | None
    decision: PolicyDecision
    started: str  # ISO time
    seconds: float = 0.0
    seen_rows: int = 0  # rows of the drop the champion was trained on, set aside before the tests
    reference: dict[str, Any] = field(default_factory=dict)  # where the reference came from: run, splits, rows

    @property
    def model(self) -> str:
        return f"{self.model_name}/{self.model_version}"

    @property
    def input_drift(self) -> bool:
        return self.embedding.drifted or any(d.drifted for d in self.descriptors)

    def scores(self) -> dict[str, float]:
        """Flat numbers for MLflow metrics and the Skipped reason (monitor.* keys)."""
        out: dict[str, float] = {
            "rows": float(self.rows),
            "seen_rows": float(self.seen_rows),
            "labelled_rows": float(self.labelled_rows),
            "embedding_p_value": self.embedding.p_value,
            "embedding_mmd2": self.embedding.statistic,
            "input_drift": float(self.input_drift),
            "prediction_drift": float(self.prediction.drifted),
            "predicted_label_p_value": self.prediction.label_test.p_value,
            "predicted_label_tvd": self.prediction.label_test.effect,
            "confidence_p_value": self.prediction.confidence_test.p_value,
            "confidence_ks": self.prediction.confidence_test.effect,
            "retrain": float(self.decision.retrain),
            "seconds": self.seconds,
        }
        for d in self.descriptors:
            out[f"descriptor.{d.name}.p_value"] = d.p_value
            out[f"descriptor.{d.name}.effect"] = d.effect
        if self.decay is not None:
            out.update(
                {
                    "accuracy": self.decay.accuracy,
                    "accuracy_ci_low": self.decay.accuracy_ci[0],
                    "accuracy_ci_high": self.decay.accuracy_ci[1],
                    "macro_f1": self.decay.macro_f1,
                    "macro_f1_ci_low": self.decay.macro_f1_ci[0],
                    "macro_f1_ci_high": self.decay.macro_f1_ci[1],
                    "label_shift_p_value": self.decay.label_test.p_value,
                    "label_shift_tvd": self.decay.label_test.effect,
                    "decay": float(self.decay.decayed),
                }
            )
            if self.decay.accuracy_drop is not None:
                out["accuracy_drop"] = self.decay.accuracy_drop
        return out

    def markdown(self) -> str:
        """The decision and every test as Markdown (the Prefect artifact; the HTML report has the charts)."""
        verdict = "Retrain" if self.decision.retrain else "Skipped"
        tests = [*self.descriptors, self.embedding, self.prediction.label_test, self.prediction.confidence_test]
        if self.decay is not None:
            tests.append(self.decay.label_test)
        rows = "\n".join(
            f"| {t.name} | {t.method} | {t.statistic:.4g} | {t.p_value:.3g} | {t.effect:.3f} | {t.reference:.3f} | "
            f"{t.current:.3f} | {'**yes**' if t.drifted else 'no'} |"
            for t in tests
        )
        decay = ""
        if self.decay is not None:
            d = self.decay
            reg = f"{d.registered_accuracy:.4f}" if d.registered_accuracy is not None else "not recorded"
            decay = (
                f"\n\n**Decay** on {d.n} labelled rows: accuracy {d.accuracy:.4f} [{d.accuracy_ci[0]:.4f}, "
                f"{d.accuracy_ci[1]:.4f}] vs registered {reg}; macro-F1 {d.macro_f1:.4f} [{d.macro_f1_ci[0]:.4f}, "
                f"{d.macro_f1_ci[1]:.4f}]; decayed: {'**yes**' if d.decayed else 'no'}"
            )
        return (
            f"## Monitoring {self.model}: {verdict}\n\n{self.decision.reason}\n\n"
            f"Drop: `{self.drop}` ({self.rows} rows judged, {self.labelled_rows} labelled, {self.seen_rows} set aside: "
            f"texts the champion was trained on); {self.seconds:.1f}s\n\n"
            "| test | method | statistic | p-value | effect | reference | drop | drifted |\n|---|---|---|---|---|---|---|---|\n"
            f"{rows}{decay}\n"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MonitorResult:
        raw = dict(raw)
        pred = dict(raw["prediction"])
        pred["label_test"] = TwoSampleTest(**pred["label_test"])
        pred["confidence_test"] = TwoSampleTest(**pred["confidence_test"])
        decay = raw.get("decay")
        if decay is not None:
            decay = dict(decay)
            decay["label_test"] = TwoSampleTest(**decay["label_test"])
            decay["accuracy_ci"] = tuple(decay["accuracy_ci"])
            decay["macro_f1_ci"] = tuple(decay["macro_f1_ci"])
            decay = Decay(**decay)
        return cls(
            **{
                **raw,
                "descriptors": [TwoSampleTest(**d) for d in raw["descriptors"]],
                "embedding": TwoSampleTest(**raw["embedding"]),
                "prediction": PredictionDrift(**pred),
                "decay": decay,
                "decision": PolicyDecision(**raw["decision"]),
            }
        )

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> MonitorResult:
        return cls.from_dict(json.loads(Path(path).read_text()))
