"""The stack supervisor without the real servers: commands, loopback defaults, failure reports, health checks."""

import sys
from pathlib import Path

import pytest

from textclf.serve import Service, ServiceFailed, Stack, StackSettings, build_services, check, redact_uri
from textclf.settings import telemetry_off_env


def test_servers_bind_to_loopback_and_mlflow_serves_its_artifacts(tmp_path):
    settings = StackSettings(state_dir=tmp_path, prefect_port=4311, mlflow_port=5311)
    prefect, mlflow, worker = build_services(settings, ["--config", "params.yaml"], {})
    for service in (prefect, mlflow):
        assert service.cmd[service.cmd.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in mlflow.cmd
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert prefect.env["PREFECT_HOME"] == str(tmp_path.resolve() / "prefect")
    # flows started by the worker log to this stack's MLflow server
    assert "tracking.tracking_uri=http://127.0.0.1:5311" in worker.cmd
    assert worker.env["PREFECT_API_URL"] == "http://127.0.0.1:4311/api"


def test_the_store_password_is_in_the_mlflow_servers_environment_only_and_never_echoed(tmp_path):
    uri = "postgresql://mlflow:s3cr3t-pw@db.internal:5432/mlflow"
    settings = StackSettings(state_dir=tmp_path, mlflow_backend_uri=uri)
    user_env = {"TEXTCLF_MLFLOW_BACKEND_URI": uri, "MLFLOW_BACKEND_STORE_URI": uri}
    prefect, mlflow, worker = build_services(settings, [], user_env)
    assert "--backend-store-uri" not in mlflow.cmd  # `mlflow server` reads the option's envvar
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"] == uri
    for service in (prefect, mlflow, worker):
        assert not any("s3cr3t-pw" in arg for arg in service.cmd), service.name
        assert "s3cr3t-pw" not in repr(service)
    assert not any("s3cr3t-pw" in value for s in (prefect, worker) for value in s.env.values())
    assert mlflow.note == "backend store postgresql://mlflow:***@db.internal:5432/mlflow"

    # The server's own log, quoted in a failure report, is masked too.
    mlflow.log.parent.mkdir(parents=True)
    mlflow.log.write_text(f"could not connect to {uri}\n")
    assert "s3cr3t-pw" not in mlflow.log_tail() and "mlflow:***@db.internal" in mlflow.log_tail()


def test_redact_uri_masks_only_a_password():
    assert redact_uri("postgresql://u:p%40ss@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"
    assert redact_uri("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_uri("sqlite:///tmp/mlflow.db") == "sqlite:///tmp/mlflow.db"


def test_prefect_server_has_csrf_on_and_cors_to_its_own_ui_origin(tmp_path):
    settings = StackSettings(state_dir=tmp_path, prefect_port=4312)
    user_env = {"PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "false", "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": "*"}
    prefect, _, worker = build_services(settings, [], user_env)
    assert prefect.env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert prefect.env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "http://127.0.0.1:4312"
    assert worker.env["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] == "true"  # the worker's client fetches tokens


def test_every_service_starts_with_telemetry_off_unless_the_user_opted_in(tmp_path):
    services = build_services(StackSettings(state_dir=tmp_path), [], {})
    for service in services:
        assert telemetry_off_env().items() <= service.env.items(), service.name
    opted_in = build_services(StackSettings(state_dir=tmp_path), [], {"MLFLOW_DISABLE_TELEMETRY": "false"})
    assert all(s.env["MLFLOW_DISABLE_TELEMETRY"] == "false" for s in opted_in)
    assert all(s.env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" for s in opted_in)


def test_settings_declare_each_default_once_with_its_help():
    settings = StackSettings()
    assert StackSettings.default("prefect_port") == settings.prefect_port == 4200
    assert StackSettings.default("host") == settings.host == "127.0.0.1"
    assert StackSettings.default("state_dir") == settings.state_dir
    assert "port" in StackSettings.describe("mlflow_port")


def test_check_reports_every_service_down_when_nothing_listens(tmp_path):
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    results = check(StackSettings(prefect_port=ports[0], mlflow_port=ports[1], state_dir=tmp_path))
    assert [(name, ok) for name, ok, _ in results] == [("prefect", False), ("mlflow", False), ("worker", False)]


def test_a_service_that_exits_fails_the_start_with_its_last_log_line(tmp_path):
    def never_healthy():
        return False, "not yet"

    crashing = Service(
        "prefect",
        [sys.executable, "-c", "print('port 4200 is taken'); raise SystemExit(3)"],
        {},
        tmp_path / "logs" / "prefect.log",
        never_healthy,
    )
    idle = [
        Service(name, [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / f"{name}.log", never_healthy)
        for name in ("mlflow", "worker")
    ]
    stack = Stack([crashing, *idle], Path.cwd(), echo=lambda line: None)
    with pytest.raises(ServiceFailed, match="prefect exited with code 3: port 4200 is taken"):
        stack.start(timeout_s=30)
    assert not any(s.running() for s in stack.services.values())  # the others were stopped
