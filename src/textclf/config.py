"""The one typed config: Prefect parameter form, CLI config and `params.yaml`.

Every field is documented where it is declared; the text shows up in `textclf --help`,
in the Prefect UI form and in the JSON schema. Unknown keys are rejected everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textclf.errors import ConfigError

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
PACKAGED_DATA = "packaged:rotten_tomatoes"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the labelled texts come from and how they are split."""

    source: str = Field(
        PACKAGED_DATA,
        description=(
            "Data source: 'packaged:rotten_tomatoes' (ships with the install), a CSV/JSONL/Parquet "
            "file, a folder of such files, a Hugging Face dataset saved with save_to_disk, or "
            "'hf:<dataset id>' for the hub."
        ),
    )
    text_column: str = Field("text", min_length=1, description="Column holding the input text.")
    label_column: str = Field("label", min_length=1, description="Column holding the class label.")
    labels: list[str] | None = Field(
        None,
        description="Declared label set, in id order. Empty: taken from the data, sorted.",
    )
    group_column: str | None = Field(
        None,
        description="Optional column whose groups stay on one side of the split (e.g. movie_name).",
    )
    max_rows: int | None = Field(
        None, gt=0, description="Keep at most this many rows (seeded stratified sample); empty: all."
    )
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for the test split.")
    seed: int = Field(42, ge=0, description="Seed for sampling and splitting.")


class ValidateConfig(_Section):
    """The data gate that runs before any training."""

    enabled: bool = Field(True, description="Run the data gate.")
    mode: Literal["fail", "quarantine"] = Field(
        "fail",
        description="'fail' stops the run on any failed check; 'quarantine' drops failing rows, "
        "writes them to a file with the reason, and continues if the rest passes.",
    )
    min_text_chars: int = Field(1, ge=1, description="Shortest allowed text, in characters.")
    max_text_chars: int = Field(20_000, gt=1, description="Longest allowed text, in characters.")
    max_duplicate_rate: float = Field(
        0.05, ge=0, le=1, description="Highest allowed share of duplicate texts within a split."
    )
    min_class_share: float = Field(
        0.05, ge=0, lt=1, description="Lowest allowed share of any class in the training split."
    )
    min_rows: int = Field(20, ge=2, description="Fewest rows the whole dataset may have.")

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_text_chars >= self.max_text_chars:
            raise ValueError("min_text_chars must be smaller than max_text_chars")
        return self


class AugmentConfig(_Section):
    """Training-set augmentation (synonyms, back-translation)."""

    enabled: bool = Field(False, description="Augment the training split.")


class TrainConfig(_Section):
    """Fine-tuning of the classifier."""

    model: str = Field(
        PACKAGED_MODEL,
        description=(
            "Model to fine-tune: 'packaged:all-MiniLM-L6-v2' (ships with the install), a local "
            "folder in Hugging Face format, or a hub id such as 'bert-base-uncased'."
        ),
    )
    epochs: float = Field(1.0, gt=0, le=100, description="Training epochs (fractions allowed).")
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Peak learning rate of AdamW.")
    batch_size: int = Field(32, ge=1, le=4096, description="Per-device training batch size.")
    eval_batch_size: int = Field(128, ge=1, le=8192, description="Batch size for evaluation.")
    grad_accum_steps: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(128, ge=8, le=8192, description="Truncate inputs to this many tokens.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear warm-up.")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up."
    )
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay.")
    group_by_length: bool = Field(
        True, description="Batch texts of similar length together so little compute goes to padding."
    )
    logging_steps: int = Field(20, ge=1, description="Log the training loss every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on validation every N steps; empty: at the end of each epoch."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement; empty: never."
    )
    checkpoint_steps: int = Field(200, ge=1, description="Save a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1, description="Keep only the last K checkpoints.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="'auto': bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU."
    )
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on long inputs.")
    dataloader_workers: int = Field(0, ge=0, le=64, description="Data loader worker processes.")
    seed: int = Field(42, ge=0, description="Seed for model init, data order and dropout.")
    nproc_per_node: int | Literal["auto"] = Field(
        "auto", description="Processes per node: 'auto' = number of GPUs, or 1 on CPU."
    )
    nnodes: int = Field(1, ge=1, description="Number of nodes for multi-node training.")
    node_rank: int = Field(0, ge=0, description="Rank of this node (multi-node).")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the torchrun rendezvous (multi-node); empty: standalone."
    )
    timeout_s: int = Field(
        6 * 3600, ge=10, description="Kill the training processes after this many seconds."
    )

    @model_validator(mode="after")
    def _ranks(self) -> TrainConfig:
        if isinstance(self.nproc_per_node, int) and self.nproc_per_node < 1:
            raise ValueError("nproc_per_node must be 'auto' or >= 1")
        if self.node_rank >= self.nnodes:
            raise ValueError("node_rank must be smaller than nnodes")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("rdzv_endpoint (host:port) is required when nnodes > 1")
        return self


class DistillConfig(_Section):
    """Knowledge distillation into a smaller student."""

    enabled: bool = Field(False, description="Distil the fine-tuned model into a smaller student.")


class EvalConfig(_Section):
    """Held-out evaluation and the thresholds a model must pass to be promoted."""

    min_accuracy: float = Field(0.0, ge=0, le=1, description="Lowest test accuracy a champion may have.")
    min_macro_f1: float = Field(0.0, ge=0, le=1, description="Lowest test macro-F1 a champion may have.")


class RegistryConfig(_Section):
    """MLflow Model Registry names."""

    model_name: str = Field(
        "textclf", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Registered model name."
    )
    champion_alias: str = Field(
        "champion", min_length=1, pattern=r"^[A-Za-z0-9_\-]+$", description="Alias of the serving model."
    )


class TrackingConfig(_Section):
    """Where runs, metrics and models are recorded."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; empty: a sqlite store in <output_dir>/mlflow.db.",
    )
    artifact_location: str | None = Field(
        None, description="Artifact root for a new experiment; empty: <output_dir>/mlartifacts."
    )
    experiment: str = Field("textclf", min_length=1, description="MLflow experiment name.")


class PipelineConfig(_Section):
    """Everything one retraining run needs."""

    output_dir: str = Field("outputs", min_length=1, description="Folder for run outputs and local stores.")
    data: DataConfig = Field(default_factory=DataConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the public key names (`validate`, not `validate_`)."""
        return self.model_dump(mode="json", by_alias=True)

    def flat(self) -> dict[str, str]:
        """Dotted keys -> string values, e.g. for MLflow params."""
        return {key: str(value) for key, value in flatten(self.to_dict()).items()}

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    def mlflow_uri(self) -> str:
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri
        return f"sqlite:///{(self.output_path / 'mlflow.db').resolve()}"

    def artifact_root(self) -> str:
        if self.tracking.artifact_location:
            return self.tracking.artifact_location
        return (self.output_path / "mlartifacts").resolve().as_uri()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=2")
    key, raw = item.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key; use e.g. --set train.epochs=2")
    # YAML parsing gives ints, floats, bools, null and lists the way users write them.
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = _parse_override(item)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return tree


def describe_error(err: ValidationError, origin: str) -> str:
    """One line per problem: the dotted key, what is wrong, how to fix it."""
    lines = []
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"]).replace("validate_", "validate") or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown config key '{key}'; remove it or check its spelling "
                         "(`textclf config show` lists every key)")
        else:
            lines.append(f"{origin}: config key '{key}': {problem['msg']} (got {problem.get('input')!r})")
    return "; ".join(lines)


def build_config(tree: dict[str, Any] | None = None, origin: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(tree or {})
    except ValidationError as err:
        raise ConfigError(describe_error(err, origin)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """YAML file (optional) + dotted `key=value` overrides -> validated config."""
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
        tree = loaded or {}
        origin = str(path)
    if overrides:
        tree = apply_overrides(tree, overrides)
        origin = f"{origin} + --set"
    return build_config(tree, origin)


def dump_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
