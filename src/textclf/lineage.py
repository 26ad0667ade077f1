"""Lineage: where a run's (and a registered version's) code and data came from, and the report of it.

The run is tagged once (git state at start, data version and digests after the split); a registered
version carries the same tags, so `textclf lineage` answers from the registry alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import load_from_disk
from mlflow.entities import Dataset, DatasetInput, InputTag

from textclf.config import DistillConfig, MlflowTarget
from textclf.data.sources import content_digest
from textclf.errors import ModelNotFound
from textclf.promotion import PromotionOutcome
from textclf.registry import resolve_version
from textclf.tracking import TrackedRun, client_for
from textclf.train.distill import DistillPlan

LINEAGE_PREFIXES = ("git.", "data.", "prefect.")


@dataclass(frozen=True)
class Lineage:
    """A run's lineage tags (git.*, data.*, prefect.*): what every version registered from it carries."""

    run_id: str
    data_fingerprint: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def data_version(self) -> str:
        """The DVC md5 of the data version, or 'untracked' (see data.source for what was read)."""
        return self.tags.get("data.dvc_md5", "untracked")

    def version_tags(self) -> dict[str, str]:
        return {**self.tags, "data.fingerprint": self.data_fingerprint, "mlflow.run_id": self.run_id}


def log_datasets(run: TrackedRun, splits_path: str | Path, name: str, digests: dict[str, str], rows: dict[str, int]) -> None:
    """One MLflow dataset input per split (digest = content digest), the `mlflow.log_input` record."""
    inputs = []
    for split, digest in digests.items():
        uri = (Path(splits_path) / split).resolve().as_uri()
        entity = Dataset(
            name=f"{name}-{split}",
            digest=digest,
            source_type="local",
            source=json.dumps({"uri": uri}),
            schema=None,
            profile=json.dumps({"num_rows": rows.get(split, 0)}),
        )
        inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", split)]))
    run.client().log_inputs(run.run_id, datasets=inputs)


def record_data_lineage(run: TrackedRun, splits_path: str | Path, fingerprint: str, version_tags: dict[str, str]) -> Lineage:
    """Tag the run with the data version and digests, log the splits as dataset inputs; the run's lineage."""
    splits = load_from_disk(str(splits_path))
    digests = {split: content_digest(ds) for split, ds in splits.items()}
    run.set_tags(
        {**version_tags, "data.digest": fingerprint, **{f"data.digest.{split}": value for split, value in digests.items()}}
    )
    source = version_tags.get("data.source", "data")
    log_datasets(run, splits_path, Path(source).name or source, digests, {k: len(v) for k, v in splits.items()})
    tags = {k: v for k, v in sorted(run.tags().items()) if k.startswith(LINEAGE_PREFIXES)}
    return Lineage(run.run_id, fingerprint, tags)


def student_lineage(lineage: Lineage, plan: DistillPlan, teacher: PromotionOutcome | None, dcfg: DistillConfig) -> Lineage:
    """The run's lineage plus the tags tying a student version to its teacher (version, folder) and recipe."""
    tags = {
        "distill.teacher": plan.teacher_ref,
        "distill.teacher_dir": plan.teacher_dir,
        "distill.student_kind": plan.student_kind,
        "distill.student": plan.student,
        "distill.layer_map": json.dumps(plan.layer_map),
        "distill.teacher_logits_key": plan.logits_key,
        "distill.temperature": str(dcfg.temperature),
        "distill.alpha": str(dcfg.alpha),
        "distill.hidden_mse": str(dcfg.hidden_mse),
        "distill.epochs": str(dcfg.epochs),
    }
    if plan.teacher_version:
        tags["distill.teacher_version"] = plan.teacher_version
    elif teacher is not None:  # the teacher is the model this run just registered
        tags["distill.teacher_version"] = f"{teacher.name}/{teacher.version}"
        tags["distill.teacher_uri"] = teacher.uri
    return Lineage(lineage.run_id, lineage.data_fingerprint, {**lineage.tags, **tags})


@dataclass
class LineageReport:
    """Where a model came from: registry version, run, commit, data version and digests, flow run, config."""

    model: str
    registered: dict | None  # {"name", "version", "tags"} of the registry version, if any
    run_id: str
    experiment_id: str
    status: str
    git_commit: str
    git_dirty: str
    data_source: str
    data_dvc_md5: str
    data_source_md5: str
    data_digest: str
    datasets: list[dict]
    prefect_flow_run_id: str
    config: str
    params: dict[str, str]

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[tuple[str, str]]:
        """(field, value) rows for the terminal."""
        reg = self.registered
        tracked = self.data_dvc_md5 not in ("untracked", "unknown")
        rows = [
            ("model", self.model + (f" (version {reg['version']} of {reg['name']})" if reg else "")),
            ("mlflow run", f"{self.run_id} ({self.status})"),
            ("git commit", f"{self.git_commit}{' + uncommitted changes' if self.git_dirty == 'true' else ''}"),
            ("data source", self.data_source),
            (
                "data version",
                f"{self.data_dvc_md5} (restore: textclf data restore {self.data_dvc_md5} DEST)"
                if tracked
                else f"{self.data_dvc_md5} (not a DVC version; source md5 {self.data_source_md5})",
            ),
            ("dataset digest", self.data_digest),
        ]
        rows += [(f"  {d['context'] or 'input'}", f"{d['name']} digest {d['digest']}") for d in self.datasets]
        return rows + [("prefect flow run", self.prefect_flow_run_id), ("config", self.config)]


def describe_lineage(target: MlflowTarget, model_uri: str) -> LineageReport:
    """The lineage of `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID`."""
    version = None
    if model_uri.startswith("models:/"):
        version = resolve_version(target, model_uri)
        run_id = version.run_id
    elif model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
    else:
        raise ModelNotFound(f"{model_uri}: lineage needs a models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID URI")
    run = client_for(target).get_run(run_id)
    tags = run.data.tags
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "source": d.dataset.source,
            "context": {t.key: t.value for t in d.tags}.get("mlflow.data.context", ""),
        }
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    ]
    return LineageReport(
        model=model_uri,
        registered=({"name": version.name, "version": version.version, "tags": dict(version.tags)} if version else None),
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        git_commit=tags.get("git.commit", "unknown"),
        git_dirty=tags.get("git.dirty", "unknown"),
        data_source=tags.get("data.source", "unknown"),
        data_dvc_md5=tags.get("data.dvc_md5", "unknown"),
        data_source_md5=tags.get("data.source_md5", "unknown"),
        data_digest=tags.get("data.digest", "unknown"),
        datasets=datasets,
        prefect_flow_run_id=tags.get("prefect.flow_run_id", "none"),
        config=f"runs:/{run_id}/config.yaml",
        params=dict(run.data.params),
    )
