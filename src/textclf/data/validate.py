"""The data gate that runs before training: a report of every failed check, with counts and examples."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from datasets import DatasetDict

from textclf.config import ValidateConfig


@dataclass
class CheckResult:
    check: str
    split: str
    passed: bool
    failed_count: int = 0
    detail: str = ""
    examples: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    passed: bool
    checks: list[CheckResult]
    quarantined: int = 0
    summary_path: str = ""

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def message(self) -> str:
        parts = [f"{c.check} on {c.split}: {c.failed_count} failing ({c.detail})"
                 + (f", e.g. {c.examples[:2]}" if c.examples else "") for c in self.failures]
        return "data validation failed: " + "; ".join(parts)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        self.summary_path = str(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ValidationReport:
        raw = json.loads(Path(path).read_text())
        raw["checks"] = [CheckResult(**c) for c in raw["checks"]]
        return cls(**raw)

    def markdown(self) -> str:
        rows = ["| check | split | passed | failing | detail |", "|---|---|---|---|---|"]
        rows += [f"| {c.check} | {c.split} | {'yes' if c.passed else '**no**'} | {c.failed_count} | {c.detail} |"
                 for c in self.checks]
        head = "passed" if self.passed else "FAILED"
        return f"## Data validation: {head}\n\n" + "\n".join(rows)


def _short(texts: pd.Series, n: int = 3) -> list[str]:
    return [t[:80] for t in texts.head(n).astype(str)]


def check_split(frame: pd.DataFrame, split: str, cfg: ValidateConfig, n_classes: int) -> list[CheckResult]:
    text = frame["text"].astype(str)
    stripped_len = text.str.strip().str.len()
    out = []
    empty = stripped_len == 0
    out.append(CheckResult("text_not_empty", split, not empty.any(), int(empty.sum()),
                           "null, empty or whitespace-only text", _short(frame.index[empty].astype(str).to_series())))
    bad_len = ~empty & ((text.str.len() < cfg.min_text_chars) | (text.str.len() > cfg.max_text_chars))
    out.append(CheckResult("text_length_between", split, not bad_len.any(), int(bad_len.sum()),
                           f"length outside [{cfg.min_text_chars}, {cfg.max_text_chars}]", _short(text[bad_len])))
    dup = text.duplicated(keep="first")
    rate = float(dup.mean()) if len(text) else 0.0
    out.append(CheckResult("duplicate_rate_at_most", split, rate <= cfg.max_duplicate_rate, int(dup.sum()),
                           f"duplicate share {rate:.3f} > {cfg.max_duplicate_rate}" if rate > cfg.max_duplicate_rate
                           else f"duplicate share {rate:.3f}", _short(text[dup])))
    if split == "train":
        shares = frame["label"].value_counts(normalize=True).reindex(range(n_classes), fill_value=0.0)
        low = shares[shares < cfg.min_class_share]
        out.append(CheckResult("min_class_share", split, low.empty, len(low),
                               f"classes {list(low.index)} below share {cfg.min_class_share}" if len(low)
                               else "every class present"))
    return out


def validate_splits(splits: DatasetDict, cfg: ValidateConfig, out_dir: Path) -> ValidationReport:
    """Run every check on every split and write `validation.json` to `out_dir`."""
    n_classes = splits["train"].features["label"].num_classes
    frames = {name: ds.to_pandas() for name, ds in splits.items()}
    checks: list[CheckResult] = []
    total = sum(len(f) for f in frames.values())
    checks.append(CheckResult("min_rows", "all", total >= cfg.min_rows, 0 if total >= cfg.min_rows else total,
                              f"{total} rows, need >= {cfg.min_rows}"))
    for name, frame in frames.items():
        checks.extend(check_split(frame, name, cfg, n_classes))
    train_texts = set(frames["train"]["text"])
    for name in ("validation", "test"):
        leaked = frames[name]["text"].isin(train_texts)
        checks.append(CheckResult("not_in_train", name, not leaked.any(), int(leaked.sum()),
                                  "texts also present in train", _short(frames[name]["text"][leaked])))
    report = ValidationReport(passed=all(c.passed for c in checks), checks=checks)
    report.write(Path(out_dir) / "validation.json")
    return report
