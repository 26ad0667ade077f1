"""The deployments' run form: the fields a data scientist decides, the config's bounds and help, nothing else."""

from __future__ import annotations

import json

import pytest

from textclf.config import PipelineConfig, build_config
from textclf.errors import ConfigError
from textclf.form import DEPLOYMENT_CONFIG_ENV, FORM_FIELDS, RunForm, apply_form, deployment_config, deployment_env, form_of


def test_the_form_holds_the_run_choices_only_with_the_configs_bounds_and_help():
    schema = RunForm.model_json_schema()
    assert list(schema["properties"]) == [
        "data_source",
        "model",
        "kind",
        "epochs",
        "learning_rate",
        "augment",
        "distill",
        "reason",
    ]
    assert schema["additionalProperties"] is False
    epochs = schema["properties"]["epochs"]
    declared = PipelineConfig.model_json_schema()["$defs"]["TrainConfig"]["properties"]["epochs"]
    assert epochs["exclusiveMinimum"] == declared["exclusiveMinimum"] == 0
    assert epochs["maximum"] == declared["maximum"]
    assert epochs["description"] == declared["description"] and epochs["type"] == "number"  # an input, no type picker
    assert all("anyOf" not in field for field in schema["properties"].values())
    infra = {"tracking_uri", "artifact_location", "output_dir", "cache_dir", "dask_address", "experiment"}
    assert not infra & set(schema["properties"]) and not infra & {name for _, name in FORM_FIELDS.values()}


def test_apply_form_changes_only_the_filled_fields():
    base = build_config({"output_dir": "/srv/textclf", "tracking": {"tracking_uri": "http://mlflow:5000"}})
    cfg = apply_form(base, {"epochs": 2.5, "augment": False, "reason": "new drop from support", "model": None})
    assert (cfg.train.epochs, cfg.augment.enabled, cfg.ops.reason) == (2.5, False, "new drop from support")
    assert cfg.train.model == base.train.model  # empty: the deployment's value
    assert cfg.tracking.tracking_uri == "http://mlflow:5000" and cfg.output_dir == "/srv/textclf"
    assert apply_form(base, None) == base and apply_form(base, form_of(base)) == base


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"epochs": -1}, "run form field epochs: Input should be greater than 0"),
        ({"tracking_uri": "http://attacker:5000"}, "run form field tracking_uri: Extra inputs are not permitted"),
        ({"reason": "x" * 501}, "run form field reason: String should have at most 500 characters"),
    ],
)
def test_a_bad_form_is_one_config_error_naming_the_field(form, message):
    with pytest.raises(ConfigError) as err:
        apply_form(PipelineConfig(), form)
    assert str(err.value) == message


def test_the_deployment_config_travels_in_the_environment(monkeypatch):
    cfg = build_config({"output_dir": "/srv/textclf", "train": {"epochs": 3}})
    env = deployment_env(cfg)
    monkeypatch.setenv(DEPLOYMENT_CONFIG_ENV, env[DEPLOYMENT_CONFIG_ENV])
    assert deployment_config() == cfg
    monkeypatch.setenv(DEPLOYMENT_CONFIG_ENV, "{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        deployment_config()
    monkeypatch.setenv(DEPLOYMENT_CONFIG_ENV, json.dumps({"train": {"epochs": -1}}))
    with pytest.raises(ConfigError, match="epochs"):
        deployment_config()
    monkeypatch.delenv(DEPLOYMENT_CONFIG_ENV)
    with pytest.raises(ConfigError, match="textclf worker"):
        deployment_config()
