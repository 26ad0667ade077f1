"""What an augmentation run did: counts per op and class, drops, skips, throughput, example pairs."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_FILE = "augment_report.json"


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class AugmentReport:
    rows_before: dict[str, int] = field(default_factory=dict)  # label -> training rows
    rows_after: dict[str, int] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)  # op -> rows asked for
    generated: dict[str, int] = field(default_factory=dict)  # op -> outputs before filters
    added: dict[str, dict[str, int]] = field(default_factory=dict)  # op -> label -> rows kept
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # op -> filter -> rows
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> source rows not augmentable
    seconds: dict[str, float] = field(default_factory=dict)  # op -> wall time
    sources: dict[str, int] = field(default_factory=dict)  # op -> source sentences processed
    cache: dict[str, int] = field(default_factory=dict)
    backend_errors: int = 0
    pairs: list[dict] = field(default_factory=list)  # op, label, original, augmented
    notes: list[str] = field(default_factory=list)

    @classmethod
    def unchanged(cls, train, note: str) -> AugmentReport:
        """The report of a training split left as it is (augmentation off)."""
        names = train.features["label"].names
        rows = dict(sorted(Counter(names[i] for i in train["label"]).items()))
        return cls(rows_before=rows, rows_after=dict(rows), notes=[note])

    def total_added(self) -> int:
        return sum(sum(per.values()) for per in self.added.values())

    def drop_rate(self, op: str) -> float:
        made = self.generated.get(op, 0)
        return sum(self.dropped.get(op, {}).values()) / made if made else 0.0

    def throughput(self, op: str) -> float:
        secs = self.seconds.get(op, 0.0)
        return self.sources.get(op, 0) / secs if secs > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow."""
        out: dict[str, float] = {
            "augment.rows_added": float(self.total_added()),
            "augment.backend_errors": float(self.backend_errors),
        }
        for op in self.generated:
            out[f"augment.{op}.added"] = float(sum(self.added.get(op, {}).values()))
            out[f"augment.{op}.drop_rate"] = self.drop_rate(op)
            out[f"augment.{op}.sentences_per_s"] = self.throughput(op)
            out[f"augment.{op}.seconds"] = self.seconds.get(op, 0.0)
        for reason, n in self.skipped.items():
            out[f"augment.skipped.{reason}"] = float(n)
        for key, n in self.cache.items():
            out[f"augment.cache.{key}"] = float(n)
        return out

    def markdown(self) -> str:
        lines = [
            "## Augmentation",
            "",
            "| op | planned | generated | kept | drop rate | sentences/s | per class |",
            "|---|---|---|---|---|---|---|",
        ]
        for op in self.generated:
            per = ", ".join(f"{k}: {v}" for k, v in self.added.get(op, {}).items())
            lines.append(
                f"| {op} | {self.planned.get(op, 0)} | {self.generated[op]} | "
                f"{sum(self.added.get(op, {}).values())} | {self.drop_rate(op):.1%} | "
                f"{self.throughput(op):.1f} | {per} |"
            )
        drops = "; ".join(f"{op}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for op, d in self.dropped.items() if d)
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items()) or "none"
        lines += [
            "",
            f"Training rows per class: {self.rows_before} -> {self.rows_after}",
            f"Dropped by filter: {drops or 'none'}",
            f"Skipped sources: {skipped}",
            f"Cache: {self.cache or 'not used'}; backend errors: {self.backend_errors}",
        ]
        lines += [f"Note: {n}" for n in self.notes]
        lines += ["", "| op | label | original | augmented |", "|---|---|---|---|"]
        lines += [f"| {p['op']} | {p['label']} | {_cell(p['original'])} | {_cell(p['augmented'])} |" for p in self.pairs]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "augment_report.md").write_text(self.markdown(), encoding="utf-8")
        path = folder / REPORT_FILE
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> AugmentReport:
        return cls(**json.loads((Path(folder) / REPORT_FILE).read_text(encoding="utf-8")))
