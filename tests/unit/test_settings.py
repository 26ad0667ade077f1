"""The telemetry switches: names that the installed Prefect, MLflow and huggingface_hub really read, set as
defaults a user can override."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from textclf.settings import TELEMETRY_OFF, disable_telemetry, telemetry_off_env

REPO = Path(__file__).resolve().parents[2]


def test_prefect_reads_its_server_analytics_switch_under_that_name():
    from prefect.settings import Settings

    # PREFECT_SERVER_ANALYTICS_ENABLED -> settings.server.analytics_enabled (a rename fails here)
    settings = Settings.model_validate({"server": {"analytics_enabled": False}})
    assert settings.server.analytics_enabled is False
    assert "analytics_enabled" in type(settings.server).model_fields
    assert "PREFECT_SERVER_" == type(settings.server).model_config["env_prefix"].upper()


def test_prefect_server_analytics_is_off_with_our_environment(monkeypatch):
    from prefect.settings import Settings

    for name, value in telemetry_off_env().items():
        monkeypatch.setenv(name, value)
    assert Settings().server.analytics_enabled is False


def test_prefect_client_analytics_honour_do_not_track(monkeypatch):
    from prefect._internal.analytics.enabled import is_telemetry_enabled

    monkeypatch.setenv("DO_NOT_TRACK", TELEMETRY_OFF["DO_NOT_TRACK"])
    assert is_telemetry_enabled() is False


def test_mlflow_declares_the_variables_it_reads(monkeypatch):
    from mlflow import environment_variables
    from mlflow.telemetry import utils

    assert environment_variables.MLFLOW_DISABLE_TELEMETRY.name == "MLFLOW_DISABLE_TELEMETRY"
    assert '"DO_NOT_TRACK"' in inspect.getsource(utils.is_telemetry_disabled)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", TELEMETRY_OFF["MLFLOW_DISABLE_TELEMETRY"])
    assert environment_variables.MLFLOW_DISABLE_TELEMETRY.get() is True


def test_mlflow_counts_our_do_not_track_value_as_off(monkeypatch):
    from mlflow.telemetry import utils

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", TELEMETRY_OFF["DO_NOT_TRACK"])
    assert utils.is_telemetry_disabled() is True


def test_huggingface_hub_and_dvc_read_those_names():
    import huggingface_hub.constants
    from dvc import env

    assert '"HF_HUB_DISABLE_TELEMETRY"' in inspect.getsource(huggingface_hub.constants)
    assert env.DVC_NO_ANALYTICS == "DVC_NO_ANALYTICS"


def test_disable_telemetry_sets_defaults_and_keeps_the_users_choice():
    environ = {"DO_NOT_TRACK": "false", "PATH": "/bin"}
    added = disable_telemetry(environ)
    assert "DO_NOT_TRACK" not in added  # the user's opt-in stays
    assert environ["DO_NOT_TRACK"] == "false"
    assert {k: v for k, v in environ.items() if k not in ("DO_NOT_TRACK", "PATH")} == added
    assert added.keys() == TELEMETRY_OFF.keys() - {"DO_NOT_TRACK"}
    assert disable_telemetry(environ) == {}


def test_the_makefile_exports_the_same_switches():
    """`make mlflow-ui` starts MLflow without textclf: its exports must match the library's."""
    exports = dict(re.findall(r"^export (\w+) \?= (\S+)$", (REPO / "Makefile").read_text(), flags=re.M))
    assert telemetry_off_env().items() <= exports.items()
