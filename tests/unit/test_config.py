"""The one typed config: defaults, files, overrides, and the errors users get."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from textclf.config import PipelineConfig, build_config, flatten, load_config
from textclf.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_equals_the_defaults():
    on_disk = yaml.safe_load((REPO / "params.yaml").read_text())
    assert on_disk == PipelineConfig().to_dict(), "regenerate: textclf config show > params.yaml"


def test_every_dvc_param_exists_in_the_model():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    known = set(flatten(PipelineConfig().to_dict()))
    sections = set(PipelineConfig().to_dict())
    used = []
    for stage in dvc["stages"].values():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else next(iter(entry.values()))
            used.extend([keys] if isinstance(keys, str) else keys)
    assert used, "dvc.yaml declares no params"
    unknown = [k for k in used if k not in known and k not in sections]
    assert not unknown, f"dvc.yaml params not in the config model: {unknown}"


def test_file_plus_dotted_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: 8\n")
    cfg = load_config(path, ["train.epochs=2", "data.labels=[neg, pos]", "validate.mode=quarantine"])
    assert cfg.train.epochs == 2 and cfg.train.batch_size == 8
    assert cfg.data.labels == ["neg", "pos"]
    assert cfg.validate_.mode == "quarantine"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.epochs=0"], "train.epochs"),
        (["train.learning_rate=-1"], "train.learning_rate"),
        (["train.batch_size=big"], "train.batch_size"),
        (["data.val_fraction=0.9"], "data.val_fraction"),
        (["validate.mode=maybe"], "validate.mode"),
    ],
)
def test_bad_values_name_the_key_in_one_line(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    message = str(err.value)
    assert key in message and "\n" not in message


@pytest.mark.parametrize("overrides", [["train.epoch=2"], ["trian.epochs=2"], ["train.epochs.x=1"]])
def test_unknown_keys_are_rejected(overrides):
    with pytest.raises(ConfigError, match=r"unknown config key|not a section|epochs"):
        load_config(None, overrides)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r".*unknown config key 'train.lr'"):
        load_config(path)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        build_config({"train": {"nnodes": 2}})
    with pytest.raises(ConfigError, match="min_text_chars"):
        build_config({"validate": {"min_text_chars": 50, "max_text_chars": 10}})


def test_every_field_is_documented():
    undocumented = []

    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, PipelineConfig.__mro__[1]):
                walk(annotation, key + ".")
            elif not field.description:
                undocumented.append(key)

    walk(PipelineConfig)
    assert not undocumented, f"fields without a description: {undocumented}"


def test_schema_is_what_the_prefect_form_renders():
    schema = PipelineConfig.model_json_schema(by_alias=True)
    assert {"data", "validate", "train", "evaluate", "registry", "tracking"} <= set(schema["properties"])
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["epochs"]["exclusiveMinimum"] == 0
    assert "description" in train["learning_rate"]


def test_artifact_root_local_store_remote_server_and_explicit(tmp_path):
    local = build_config({"output_dir": str(tmp_path)})
    assert local.artifact_root() == (tmp_path / "mlartifacts").resolve().as_uri()
    remote = build_config({"output_dir": str(tmp_path), "tracking": {"tracking_uri": "http://mlflow:5000"}})
    assert remote.artifact_root() is None  # the server's proxied default, not a path on this machine
    explicit = build_config({"tracking": {"tracking_uri": "http://mlflow:5000", "artifact_location": "s3://b/x"}})
    assert explicit.artifact_root() == "s3://b/x"
