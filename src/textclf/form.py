"""The Prefect UI form of the deployments: what a data scientist decides for one run, and nothing else.

The form carries the data source, the model, epochs, learning rate, the augmentation and distillation switches
and a reason. Everything else, the infrastructure above all (tracking URI, artifact location, output and cache
folders, Dask address), is the deployment's: `textclf worker` puts its whole config in the environment of the
runs it starts (DEPLOYMENT_CONFIG_ENV; a work pool's job variables for `--work-pool`), and the form is applied
on top of it. The form's schema forbids every other key, so the Prefect server refuses a run that tries to set
one (HTTP 409) before anything starts: whoever can start a run cannot choose which server the worker talks to.

Each form field is a config field: its bounds, choices and help are those declared in config.py (one
declaration); a field left out keeps the deployment's value.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from textclf.config import PipelineConfig, build_config
from textclf.errors import ConfigError
from textclf.settings import env_value

DEPLOYMENT_CONFIG_ENV = "TEXTCLF_DEPLOYMENT_CONFIG"  # the deployment's config (JSON), set by `textclf worker`

# form field -> (config section, field in it)
FORM_FIELDS: dict[str, tuple[str, str]] = {
    "data_source": ("data", "source"),
    "model": ("train", "model"),
    "kind": ("train", "kind"),
    "epochs": ("train", "epochs"),
    "learning_rate": ("train", "learning_rate"),
    "augment": ("augment", "enabled"),
    "distill": ("distill", "enabled"),
    "reason": ("ops", "reason"),
}


def _plain_type(schema: dict[str, Any]) -> None:
    """Show an optional field as its own type: the UI renders `anyOf [T, null]` as a type picker, not an input.
    Null stays possible in Python (an omitted field: the deployment's value); the UI always sends values."""
    options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])


def _config_field(section: str, name: str) -> tuple[Any, Any]:
    """The form's version of a config field: the same type and constraints, optional (omitted = the deployment's)."""
    section_model = PipelineConfig.model_fields[section].annotation
    assert isinstance(section_model, type) and issubclass(section_model, BaseModel)
    info = section_model.model_fields[name]
    inner: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    if name == "reason":  # str | None in the config: a text field here
        inner = Annotated[str, *info.metadata]
    return inner | None, Field(None, description=info.description, json_schema_extra=_plain_type)


RunForm: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "RunForm",
    __config__=ConfigDict(extra="forbid", title="Retrain"),
    __doc__="What to train in this run; servers, stores and folders are the deployment's.",
    **{field: _config_field(*where) for field, where in FORM_FIELDS.items()},
)


def form_of(cfg: PipelineConfig) -> dict[str, Any]:
    """The form filled with `cfg`'s values (a deployment's default parameters: the UI shows them); a value the
    config leaves empty (no reason) is left out."""
    tree = cfg.to_dict()
    values = {field: tree[section][name] for field, (section, name) in FORM_FIELDS.items()}
    return {field: value for field, value in values.items() if value is not None}


def apply_form(base: PipelineConfig, form: BaseModel | dict[str, Any] | None) -> PipelineConfig:
    """`base` with the form's non-empty fields; validated as a whole (a ConfigError names the field)."""
    values = form.model_dump() if isinstance(form, BaseModel) else dict(form or {})
    try:
        values = RunForm.model_validate(values).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"run form field {where}: {first['msg']}") from None
    tree = base.to_dict()
    for field, value in values.items():
        if value is not None:
            section, name = FORM_FIELDS[field]
            tree[section][name] = value
    return build_config(tree)


def deployment_config() -> PipelineConfig:
    """The deployment's config, from the environment `textclf worker` (or a work pool's job) gave this run."""
    raw = env_value(DEPLOYMENT_CONFIG_ENV)
    if not raw:
        raise ConfigError(
            f"{DEPLOYMENT_CONFIG_ENV} is not set: the deployments' flow runs under `textclf worker` (or a work pool "
            "registered by `textclf worker --work-pool`); for a local run use `textclf run`"
        )
    try:
        tree = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{DEPLOYMENT_CONFIG_ENV} is not JSON ({err.msg}); restart `textclf worker`") from None
    return build_config(tree)


def config_from_form(form: BaseModel | dict[str, Any] | None) -> PipelineConfig:
    """What a deployment's run trains with: the deployment's config and this run's form."""
    return apply_form(deployment_config(), form)


def config_of_run(parameters: dict[str, Any]) -> PipelineConfig | None:
    """The config a flow run ran with, from its parameters (`config`, or the deployment's with `form`); None when
    it cannot be built (a failure hook then falls back to the defaults)."""
    raw = parameters.get("config")
    if isinstance(raw, PipelineConfig):
        return raw
    try:
        return config_from_form(parameters["form"]) if "form" in parameters else build_config(raw or {})
    except ConfigError:
        return None


def deployment_env(cfg: PipelineConfig) -> dict[str, str]:
    """What a deployment's runs need in their environment: its whole config."""
    return {DEPLOYMENT_CONFIG_ENV: json.dumps(cfg.to_dict(), sort_keys=True)}
