"""The data gate before training: Great Expectations suites per split, Data Docs and a JSON summary.

`run_gate` validates train/validation/test with the suites of `textclf.data.expectations`, renders
GX Data Docs into `<out_dir>/data_docs/` and writes `<out_dir>/validation.json`. In quarantine mode
the rows failing row-level expectations are dropped (listed in `<out_dir>/quarantine.csv` with the
reason) and what remains is validated again.

Texts are compared as `textclf.data.dedup` normalises them (NFC, casefold, whitespace): duplicates,
leakage into validation/test and conflicting labels alike; the report also counts the duplicate
groups over all splits and says whether each stayed within one split (as `split_stratified` keeps them).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict

from textclf.config import ValidateConfig
from textclf.data.dedup import DuplicateSummary
from textclf.data.expectations import (
    CONFLICTING,
    KEY,
    LABEL,
    LABEL_NAME,
    ROW_LEVEL,
    SPLITS,
    TEXT,
    SplitTexts,
    add_computed_columns,
    build_dataset_suite,
    build_split_suite,
    row_level_copy,
    split_texts,
)
from textclf.errors import DataError

# Few examples per failed expectation: GX collects them for every map expectation.
SUMMARY_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5, "return_unexpected_index_query": False}
COMPLETE_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


@dataclass
class CheckResult:
    check: str
    split: str
    passed: bool
    failed_count: int = 0
    detail: str = ""
    examples: list[str] = field(default_factory=list)
    expectation: str = ""
    column: str = ""


@dataclass
class ValidationReport:
    passed: bool
    checks: list[CheckResult]
    quarantined: int = 0
    quarantined_by: dict[str, int] = field(default_factory=dict)
    summary_path: str = ""
    docs_path: str = ""
    quarantine_path: str = ""
    duplicates: DuplicateSummary = field(default_factory=DuplicateSummary)  # of the data as it came in

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def message(self) -> str:
        parts = []
        for c in self.failures:
            what = f"{c.split}: {c.check} ({c.expectation}" + (f" on {c.column})" if c.column else ")")
            parts.append(f"{what}: {c.detail}" + (f", e.g. {', '.join(c.examples[:2])}" if c.examples else ""))
        head = "data validation failed"
        if self.quarantined:
            head += f" even after quarantining {self.quarantined} row(s) to {self.quarantine_path}"
        hint = "fix or remove the rows"
        if not self.quarantined:
            hint += " (validate.mode=quarantine drops failing rows)"
        docs = f"; details in {self.docs_path}" if self.docs_path else ""
        return f"{head}: " + "; ".join(parts) + f"; {hint} or relax the validate.* bounds{docs}"

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.summary_path = str(path)
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Path) -> ValidationReport:
        raw = json.loads(Path(path).read_text())
        raw["checks"] = [CheckResult(**c) for c in raw["checks"]]
        raw["duplicates"] = DuplicateSummary(**raw.get("duplicates", {}))
        return cls(**raw)

    def markdown(self) -> str:
        rows = ["| split | check | expectation | passed | failing | detail |", "|---|---|---|---|---|---|"]
        rows += [
            f"| {c.split} | {c.check} | `{c.expectation}` {c.column} | {'yes' if c.passed else '**no**'} "
            f"| {c.failed_count} | {c.detail.replace('|', '/')} |"
            for c in self.checks
        ]
        head = "passed" if self.passed else "FAILED"
        extra = ""
        if self.quarantined:
            extra = f"\n\nQuarantined {self.quarantined} row(s) {self.quarantined_by} to `{self.quarantine_path}`."
        docs = f"\n\nGreat Expectations Data Docs: `{self.docs_path}`" if self.docs_path else ""
        dups = f"\n\n{self.duplicates.sentence()}"
        return f"## Data validation: {head}\n\n" + "\n".join(rows) + dups + extra + docs


def _show(text, limit: int = 60) -> str:
    if not isinstance(text, str):
        return repr(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


def _exception(result) -> str | None:
    """First GX exception message of an expectation result (its layout is flat or per metric)."""
    info = result.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "error").splitlines()[0]
    return None


def _examples(check: str, res: dict, frame: pd.DataFrame) -> list[str]:
    index = res.get("partial_unexpected_index_list") or []
    if check == "text_not_null":
        return [f"row {i}" for i in index[:2]]
    if check == "label_in_set":
        return [f"{frame.at[i, LABEL_NAME]!r} (row {i})" for i in index[:2]]
    if check == "duplicate_rate":
        keys = frame[KEY]
        return [_show(t) for t in frame[TEXT][keys.notna() & keys.duplicated()].head(2)]
    if check == CONFLICTING:
        return [_conflict_example(frame, i) for i in index[:2]]
    if check == "min_class_share":
        return []
    return [_show(frame.at[i, TEXT]) for i in index[:2] if TEXT in frame]


def _conflict_example(frame: pd.DataFrame, i) -> str:
    """'<text>' labelled 'neg', 'pos' (rows 3, 57): the split's rows with the same normalised text."""
    same = frame.index[(frame[KEY] == frame.at[i, KEY]).to_numpy()]
    names = ", ".join(repr(n) for n in sorted(frame.loc[same, LABEL_NAME].unique()))
    rows = ", ".join(str(r) for r in same[:4]) + (", ..." if len(same) > 4 else "")
    elsewhere = "; another label in another split" if frame.loc[same, LABEL_NAME].nunique() < 2 else ""
    return f"{_show(frame.at[i, TEXT])} labelled {names} (rows {rows}{elsewhere})"


def _to_check(split: str, result, frame: pd.DataFrame, cfg: ValidateConfig) -> CheckResult:
    """One GX expectation result -> the gate's record: name, count, a readable detail, examples."""
    conf = result.expectation_config
    check = (conf.meta or {}).get("check", conf.type)
    column = str(conf.kwargs.get("column", ""))
    out = CheckResult(check, split, bool(result.success), expectation=conf.type, column=column)
    res = result.result or {}
    error = _exception(result)
    if error:
        out.detail = f"not evaluated: {error}"
        return out
    observed = res.get("observed_value")
    if check == "min_class_share":
        total = res.get("element_count", 0)
        rows = total - res.get("unexpected_count", 0)
        out.failed_count = 0 if out.passed else int(rows)
        out.detail = (
            f"{conf.kwargs['value_set'][0]!r}: {rows} of {total} rows = {rows / max(total, 1):.3f}, need >= {cfg.min_class_share}"
        )
    elif check == "duplicate_rate":
        keyed = int(frame[KEY].notna().sum())  # non-blank texts
        unique = round((observed or 0.0) * keyed)
        out.failed_count = keyed - unique
        out.detail = (
            f"{out.failed_count} duplicate texts (after normalisation) = {1 - (observed or 0.0):.3f} of {keyed}, "
            f"allowed {cfg.max_duplicate_rate}"
        )
    elif "unexpected_count" in res:
        out.failed_count = int(res["unexpected_count"])
        out.detail = f"{out.failed_count} of {res.get('element_count', 0)} rows fail: {conf.description}"
    elif observed is not None:
        out.detail = f"observed {observed}: {conf.description}"
        if not out.passed and check in ("rows_present", "min_rows"):
            out.failed_count = int(observed)
    else:
        out.detail = conf.description or ""
    if not out.passed:
        out.examples = _examples(check, res, frame)
    return out


def _context(docs_dir: Path):
    """Ephemeral GX context whose one Data Docs site is a folder of static HTML."""
    import great_expectations as gx  # ~6 s to import: only when a gate runs
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        data_docs_sites={"textclf": site},
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


class _Gate:
    """One GX context: a pandas data source, one validation definition per suite, the Data Docs site."""

    def __init__(self, cfg: ValidateConfig, declared: list[str], class_names: list[str] | None, docs_dir: Path):
        self.cfg, self.declared, self.class_names = cfg, declared, class_names
        self.context = _context(docs_dir)
        self.source = self.context.data_sources.add_pandas("textclf")
        self.definitions: dict = {}
        self.computed: dict[str, pd.DataFrame] = {}
        self.failed_ids: dict[str, set[str]] = {}
        self.failed_checks: set[str] = set()
        self.texts: dict[str, SplitTexts] = {}
        self.duplicates = DuplicateSummary()  # of the frames last validated

    def _run(self, key: str, make_suite, frame: pd.DataFrame, result_format: dict):
        import great_expectations as gx  # ~6 s to import: only when a gate runs

        if key not in self.definitions:
            batch = self.source.add_dataframe_asset(key).add_batch_definition_whole_dataframe("all rows")
            suite = self.context.suites.add(make_suite())
            self.definitions[key] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=key, data=batch, suite=suite)
            )
        return self.definitions[key].run(batch_parameters={"dataframe": frame}, result_format=result_format)

    def validate(self, frames: dict[str, pd.DataFrame]) -> list[CheckResult]:
        self.texts, self.duplicates = split_texts(frames)
        train_keys = self.texts["train"].key
        checks: list[CheckResult] = []
        self.failed_checks = set()
        for split in SPLITS:
            leakage = None if split == "train" else train_keys
            frame = add_computed_columns(frames[split], self.class_names, self.texts[split], leakage)
            self.computed[split] = frame
            run = self._run(split, lambda s=split: build_split_suite(s, self.cfg, self.declared), frame, SUMMARY_FORMAT)
            order = {e.id: i for i, e in enumerate(self.definitions[split].suite.expectations)}
            results = sorted(run.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
            self.failed_ids[split] = {r.expectation_config.id for r in results if not r.success}
            done = [_to_check(split, r, frame, self.cfg) for r in results]
            self.failed_checks |= {c.check for c in done if not c.passed}
            checks += done
        sizes = [len(frames[s]) for s in SPLITS]
        whole = pd.DataFrame({"split": pd.Categorical(np.repeat(SPLITS, sizes), categories=SPLITS)})
        run = self._run("dataset", lambda: build_dataset_suite(self.cfg), whole, SUMMARY_FORMAT)
        checks += [_to_check("all", r, whole, self.cfg) for r in run.results]
        return checks

    def failing_rows(self) -> dict[str, dict[int, list[str]]]:
        """split -> row index -> failed row-level checks, from a COMPLETE-format run of just those.

        A label conflict failed anywhere drops the conflicting rows of every split: all copies of the text go.
        """
        rows: dict[str, dict[int, list[str]]] = {}
        everywhere = frozenset({CONFLICTING} & self.failed_checks)
        for split, failed in self.failed_ids.items():
            suite = row_level_copy(self.definitions[split].suite, failed, f"textclf.{split}.quarantine", everywhere)
            if not suite.expectations:
                continue
            run = self._run(f"{split}.quarantine", lambda s=suite: s, self.computed[split], COMPLETE_FORMAT)
            for result in run.results:
                check = result.expectation_config.meta["check"]
                for i in (result.result or {}).get("unexpected_index_list") or []:
                    rows.setdefault(split, {}).setdefault(int(i), []).append(check)
        for reasons in rows.values():
            for checks in reasons.values():
                checks.sort(key=ROW_LEVEL.index)
        return rows

    def build_docs(self) -> None:
        self.context.build_data_docs()


def _class_names(dataset: Dataset) -> list[str] | None:
    feature = dataset.features.get("label")
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _frames(splits: DatasetDict) -> dict[str, pd.DataFrame]:
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(
            f"the data has no {', '.join(missing)} split (has {list(splits)}); "
            "run `textclf ingest` to write train/validation/test"
        )
    frames = {}
    for name in SPLITS:
        columns = [c for c in (TEXT, LABEL) if c in splits[name].column_names]
        # One contiguous Arrow chunk per column: a `select`ed dataset comes back one chunk per row,
        # which makes every Arrow kernel (strip, length, is_in, take) crawl.
        table = splits[name].select_columns(columns).with_format("arrow")[:]
        frames[name] = table.combine_chunks().to_pandas()
    return frames


def _write_quarantine(frames, computed, rows: dict[str, dict[int, list[str]]], path: Path) -> pd.DataFrame:
    parts = []
    for split, reasons in rows.items():
        index = np.fromiter(reasons, dtype=np.int64)
        part = pd.DataFrame({"split": split, "row": index})
        part["label"] = computed[split][LABEL_NAME].reindex(index).to_numpy() if LABEL_NAME in computed[split] else ""
        part["reason"] = ["; ".join(reasons[i]) for i in index]
        part["text"] = frames[split][TEXT].reindex(index).to_numpy() if TEXT in frames[split] else ""
        parts.append(part.sort_values("row"))
    table = pd.concat(parts, ignore_index=True)
    table.to_csv(path, index=False)
    return table


def _clear(out_dir: Path) -> None:
    """Drop what an earlier attempt left, so no stale report or page is published as this one's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "data_docs", ignore_errors=True)
    for name in ("validation.json", "quarantine.csv"):
        (out_dir / name).unlink(missing_ok=True)


def run_gate(
    splits: DatasetDict, cfg: ValidateConfig, out_dir: Path, labels: list[str] | None = None
) -> tuple[ValidationReport, DatasetDict]:
    """Validate every split; returns the report and the splits to train on (quarantined rows dropped)."""
    out_dir = Path(out_dir)
    _clear(out_dir)
    frames = _frames(splits)
    class_names = _class_names(splits["train"])
    present = frames["train"][LABEL].dropna().astype(str).unique() if LABEL in frames["train"] else []
    declared = list(labels or class_names or sorted(present))
    gate = _Gate(cfg, declared, class_names, out_dir / "data_docs")
    checks = gate.validate(frames)
    duplicates = gate.duplicates  # of the data as it came in, also after quarantine
    report = ValidationReport(passed=all(c.passed for c in checks), checks=checks, duplicates=duplicates)
    row_failure = any(not c.passed and c.check in ROW_LEVEL for c in checks)
    rows = gate.failing_rows() if cfg.enabled and cfg.mode == "quarantine" and row_failure else {}
    if rows:
        table = _write_quarantine(frames, gate.computed, rows, out_dir / "quarantine.csv")
        frames = {s: f.drop(index=list(rows.get(s, {}))) for s, f in frames.items()}
        checks = gate.validate(frames)
        splits = DatasetDict({s: splits[s].select(frames[s].index.to_numpy()) if s in rows else splits[s] for s in frames})
        report = ValidationReport(
            passed=all(c.passed for c in checks),
            checks=checks,
            quarantined=len(table),
            quarantined_by={k: int(v) for k, v in table["reason"].value_counts().items()},
            quarantine_path=str(out_dir / "quarantine.csv"),
            duplicates=duplicates,
        )
    gate.build_docs()
    report.docs_path = str(out_dir / "data_docs" / "index.html")
    report.write(out_dir / "validation.json")
    return report, splits
