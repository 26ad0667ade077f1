"""Model card (Markdown) for a registered version: renders what is known, says plainly what is not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DATA_NOTE_TAG = "data.version_note"  # lineage tag: one line on what the data version is (textclf.versioning)

UNKNOWN = "_not recorded_"
# Config keys worth reading on the card; the full config is the run's config.yaml.
CONFIG_KEYS = (
    "data.source",
    "data.max_rows",
    "data.seed",
    "train.kind",
    "train.model",
    "train.epochs",
    "train.learning_rate",
    "train.batch_size",
    "train.max_length",
    "train.seed",
)


@dataclass
class CardInputs:
    """Everything the card shows; gathered from the registry, the run and the evaluation by registry.py."""

    name: str
    version: str
    run_id: str
    created: str
    labels: list[str]
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # run tags + version tags (lineage)
    params: dict[str, str] = field(default_factory=dict)  # the run's flattened config
    artifacts: dict[str, str] = field(default_factory=dict)  # title -> URI


def _with_prefix(values: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in sorted(values.items()) if k.startswith(prefixes)}


def _table(rows: Mapping[str, object], head=("key", "value")) -> str:
    if not rows:
        return UNKNOWN
    body = "\n".join(f"| `{k}` | {v} |" for k, v in rows.items())
    return f"| {head[0]} | {head[1]} |\n|---|---|\n{body}"


def _section_lineage(c: CardInputs) -> str:
    commit = c.tags.get("git.commit", UNKNOWN)
    dirty = c.tags.get("git.dirty")
    data = _with_prefix(c.tags, "data.", "dvc.")
    prefect = _with_prefix(c.tags, "prefect.")
    return (
        f"- code commit: `{commit}`" + (f" (uncommitted changes: {dirty})" if dirty else "") + "\n"
        f"- training run: `{c.run_id}` (config: `runs:/{c.run_id}/config.yaml`)\n"
        + (f"- orchestration: {', '.join(f'{k}={v}' for k, v in prefect.items())}\n" if prefect else "")
        + "\n**Data version**"
        + (f": {c.tags[DATA_NOTE_TAG]}" if DATA_NOTE_TAG in c.tags else "")
        + "\n\n"
        + _table({k: v for k, v in data.items() if k != DATA_NOTE_TAG})
    )


def _section_metrics(c: CardInputs) -> str:
    overall = _table({k: f"{v:.4f}" for k, v in c.metrics.items()}, ("metric", "value"))
    if not c.per_class:
        return overall
    rows = "\n".join(
        f"| {n} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |" for n, m in c.per_class.items()
    )
    return f"{overall}\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n{rows}"


def _section_augmentation(c: CardInputs) -> str:
    known = {**_with_prefix(c.params, "augment."), **_with_prefix(c.tags, "augment.")}
    if not known:
        return UNKNOWN
    used = str(known.get("augment.enabled", "")).lower() == "true"
    if not used:
        return "No augmentation was used (`augment.enabled` is false)."
    return "Augmentation **was used** for the training split.\n\n" + _table(known)


def _section_distillation(c: CardInputs) -> str:
    relation = _with_prefix(c.tags, "distill.", "teacher.", "student.")
    settings = _with_prefix(c.params, "distill.")
    if not relation and not settings:
        return UNKNOWN
    if relation:
        text = "This version is a distilled **student**; its teacher and settings:"
    elif str(settings.get("distill.enabled", "")).lower() == "true":
        text = "Distillation was enabled in the run's config; no teacher/student tag is on this version."
    else:
        text = "This version is not a distilled student (distillation disabled)."
    return f"{text}\n\n{_table({**relation, **settings})}"


MONITOR_TAG = "monitor."  # version tags the monitor flow sets: monitor.since, monitor.latest.*
MONITORING_HEAD = "## Monitoring"


def section_monitoring(tags: Mapping[str, str]) -> str:
    """Since when the version is monitored and its latest scores (version tags set by each monitoring run)."""
    since = tags.get("monitor.since")
    if not since:
        return "Not monitored yet: `textclf monitor DROP` (or a drop landing while `textclf serve` runs) judges it."
    latest = {k.removeprefix("monitor.latest."): v for k, v in sorted(tags.items()) if k.startswith("monitor.latest.")}
    return (
        f"Monitored since {since} ({tags.get('monitor.runs', '?')} run(s); history: `textclf monitor history`).\n\n"
        f"Latest result:\n\n{_table(latest, ('score', 'value'))}"
    )


def with_monitoring(card: str, tags: Mapping[str, str]) -> str:
    """`card` with its monitoring section replaced (or added before the evidence list, for older cards)."""
    section = f"{MONITORING_HEAD}\n{section_monitoring(tags)}\n\n"
    start = card.find(MONITORING_HEAD + "\n")
    if start >= 0:
        end = card.find("\n## ", start + len(MONITORING_HEAD))
        return card[:start] + section + (card[end + 1 :] if end >= 0 else "")
    evidence = card.find("## Evidence")
    return card[:evidence] + section + card[evidence:] if evidence >= 0 else card + "\n" + section


def render_model_card(c: CardInputs) -> str:
    data_source = c.params.get("data.source", UNKNOWN)
    config = {k: c.params[k] for k in CONFIG_KEYS if k in c.params}
    artifacts = "\n".join(f"- {title}: `{uri}`" for title, uri in c.artifacts.items()) or UNKNOWN
    ece = c.metrics.get("ece")
    return f"""# Model card: `{c.name}` version {c.version}

Registered {c.created} from MLflow run `{c.run_id}`. Load it with `models:/{c.name}/{c.version}`.

## Intended use
Classifies short English texts into one of: {", ".join(f"`{label}`" for label in c.labels) or UNKNOWN}.
Trained and evaluated on `{data_source}`; use it on texts of the same kind and language.

## Limitations
- Measured only on the held-out test split of the training data's distribution; other domains, languages,
  very long texts (truncated to `train.max_length` tokens) and sarcasm are not evaluated.
- Scores are softmax probabilities{f" with an expected calibration error of {ece:.3f}" if ece is not None else ""};
  read them as rankings more than as exact probabilities (see the reliability diagram).
- Latency and throughput were measured on the evaluating machine; they differ elsewhere.
- The most confident mistakes (evaluation artifacts) show failure modes worth knowing before use.

## Lineage
{_section_lineage(c)}

## Configuration (excerpt; full config in the run)
{_table(config)}

## Test metrics
{_section_metrics(c)}

## Augmentation
{_section_augmentation(c)}

## Teacher / student
{_section_distillation(c)}

{MONITORING_HEAD}
{section_monitoring(c.tags)}

## Evidence
{artifacts}
"""
