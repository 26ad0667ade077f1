"""`textclf serve`: run the Prefect server, the MLflow server and the deployments' worker as one supervised stack.

Each service is a subprocess in its own process group with its log in `<state_dir>/logs/`. Start order:
both servers (in parallel), then the worker once the Prefect API answers. Stop order: the worker first
(it may be running a flow), then the servers; SIGINT, then SIGKILL after a grace period.
Nothing here imports prefect or mlflow: they are only started as commands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from textclf.deployments import DEPLOYMENTS
from textclf.errors import TextclfError
from textclf.settings import telemetry_off_env

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 180.0  # longest wait for each service to become healthy
# Where a backend store URI (and its password) may sit in the environment: `mlflow server`'s envvar, `textclf serve`'s
BACKEND_URI_VARS = ("MLFLOW_BACKEND_STORE_URI", "TEXTCLF_MLFLOW_BACKEND_URI")


class ServiceFailed(TextclfError):
    """A service of the stack did not start or stopped answering."""

    exit_code = 5


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class StackSettings:
    """Where the stack runs. The one declaration of its defaults and their help: `textclf serve`'s options read
    them with `StackSettings.default(name)` and `StackSettings.describe(name)`."""

    host: str = _setting(
        LOOPBACK,
        "Address the servers bind to; anything but 127.0.0.1 exposes them (put auth in front first: infra/production.md).",
    )
    prefect_port: int = _setting(4200, "Prefect server (API + UI) port.")
    mlflow_port: int = _setting(5000, "MLflow tracking server port.")
    state_dir: Path = _setting(Path("outputs/service"), "Prefect home, MLflow sqlite store and artifacts, logs.")
    mlflow_backend_uri: str | None = _setting(
        None,
        "MLflow backend store; default sqlite in --state-dir; e.g. postgresql://user:password@db/mlflow "
        "(passed to the server in its environment, never on its command line).",
    )
    mlflow_artifacts: str | None = _setting(
        None, "Where the MLflow server stores artifacts; default <state-dir>/mlartifacts; e.g. s3://bucket/mlflow."
    )
    experiment: str = _setting("textclf", "MLflow experiment the worker's flows log to.")

    @classmethod
    def default(cls, name: str) -> Any:
        return _FIELDS[name].default

    @classmethod
    def describe(cls, name: str) -> str:
        return _FIELDS[name].metadata["help"]

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def prefect_home(self) -> Path:
        return (self.state_dir / "prefect").resolve()

    def worker_overrides(self) -> list[str]:
        """Config overrides that make flows started by the worker log to this stack's MLflow server."""
        return [f"tracking.tracking_uri={self.mlflow_url}", f"tracking.artifact_location=mlflow-artifacts:/{self.experiment}"]


_FIELDS = {f.name: f for f in fields(StackSettings)}


def redact_uri(uri: str) -> str:
    """`uri` with the password of its user info masked: postgresql://user:***@host/db."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _password_forms(uri: str) -> tuple[str, ...]:
    """The password of `uri` as written and percent-decoded (a server's log may quote either)."""
    password = urlsplit(uri).password
    return tuple({password, unquote(password)}) if password else ()


@dataclass
class Service:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(repr=False)  # may hold a store URI with its password
    log: Path
    healthy: Callable[[], tuple[bool, str]]
    proc: subprocess.Popen | None = field(default=None, repr=False)
    # Shown when the service is healthy; strings masked in what we echo of its log
    note: str = ""
    hidden: tuple[str, ...] = field(default=(), repr=False)

    def start(self, cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # Own session (the supervisor decides the stop order) and SIGINT restored to its default: a shell
            # that starts us in the background makes children inherit an ignored SIGINT otherwise.
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        if not self.log.is_file():
            return ""
        tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        text = " | ".join(line.strip() for line in tail)
        for secret in self.hidden:
            text = text.replace(secret, "***")
        return text

    def stop(self, grace_s: float) -> None:
        if not self.running():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        # Whatever is left of the group (uvicorn workers, flow-run subprocesses) goes now.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (systemd, docker stop) both raise KeyboardInterrupt, so the stack stops cleanly."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - our own loopback URLs
            return resp.status, resp.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except (urllib.error.URLError, OSError) as err:
        return 0, str(getattr(err, "reason", err))


def prefect_health(settings: StackSettings) -> tuple[bool, str]:
    code, body = http_get(f"{settings.prefect_api}/health")
    return code == 200 and body.strip() == "true", f"{settings.prefect_url} (GET /api/health: {code or body})"


def mlflow_health(settings: StackSettings) -> tuple[bool, str]:
    code, body = http_get(f"{settings.mlflow_url}/health")
    return code == 200 and body.strip() == "OK", f"{settings.mlflow_url} (GET /health: {code or body})"


def worker_health(settings: StackSettings) -> tuple[bool, str]:
    """Both deployments exist and a serve process polled for them recently (Prefect marks them READY)."""
    states = []
    for name in DEPLOYMENTS:
        code, body = http_get(f"{settings.prefect_api}/deployments/name/{name}")
        status = json.loads(body).get("status") if code == 200 and body.startswith("{") else f"missing ({code})"
        states.append(f"{name}: {status}")
    ok = all(s.endswith("READY") and "NOT_READY" not in s for s in states)
    return ok, ", ".join(states)


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def prefect_server_env(settings: StackSettings) -> dict[str, str]:
    """CSRF protection on and CORS limited to the UI's own origin (Prefect's defaults: off and `*`).
    Prefect's client (worker, CLI, SDK) fetches CSRF tokens itself; a bare HTTP POST gets 403."""
    return {
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": settings.prefect_url,
        "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "true",
    }


def build_services(settings: StackSettings, worker_args: list[str], base_env: Mapping[str, str]) -> list[Service]:
    state = settings.state_dir.resolve()
    logs = state / "logs"
    # Telemetry off in all three unless base_env (the user's environment) says otherwise; the security
    # settings are the stack's, whatever base_env says.
    env = {
        **telemetry_off_env(),
        **base_env,
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_API_URL": settings.prefect_api,
        "MLFLOW_TRACKING_URI": settings.mlflow_url,
        "PYTHONUNBUFFERED": "1",
        **prefect_server_env(settings),
    }
    for name in BACKEND_URI_VARS:  # a store password reaches the MLflow server only
        env.pop(name, None)
    backend = settings.mlflow_backend_uri or f"sqlite:///{state / 'mlflow.db'}"
    artifacts = settings.mlflow_artifacts or str(state / "mlartifacts")
    prefect = Service(
        "prefect",
        [_bin("prefect"), "server", "start", "--host", settings.host, "--port", str(settings.prefect_port)],
        env,
        logs / "prefect.log",
        lambda: prefect_health(settings),
        note="CSRF protection on, CORS origin " + settings.prefect_url,
    )
    # The store URI may carry a password: `mlflow server` reads it from its environment (the option's envvar),
    # so it is not in `ps`, and only this service gets it.
    mlflow = Service(
        "mlflow",
        [
            _bin("mlflow"),
            "server",
            "--artifacts-destination",
            artifacts,
            "--serve-artifacts",
            "--host",
            settings.host,
            "--port",
            str(settings.mlflow_port),
            "--workers",
            "1",
        ],
        {**env, "MLFLOW_BACKEND_STORE_URI": backend},
        logs / "mlflow.log",
        lambda: mlflow_health(settings),
        note=f"backend store {redact_uri(backend)}",
        hidden=_password_forms(backend),
    )
    overrides = [arg for item in settings.worker_overrides() for arg in ("--set", item)]
    worker = Service(
        "worker", [_bin("textclf"), "worker", *worker_args, *overrides], env, logs / "worker.log", lambda: worker_health(settings)
    )
    return [prefect, mlflow, worker]


class Stack:
    """Start, watch and stop the services; `check` reports each one's health."""

    def __init__(self, services: list[Service], cwd: Path, echo: Callable[[str], None] = print):
        self.services = {s.name: s for s in services}
        self.cwd = cwd
        self.echo = echo

    def wait_healthy(self, name: str, timeout_s: float) -> str:
        service = self.services[name]
        deadline = time.monotonic() + timeout_s
        while True:
            # Exited first: a port taken by another server would otherwise answer the health check for us.
            if service.proc is not None and not service.running():
                raise ServiceFailed(
                    f"{name} exited with code {service.proc.returncode}: {service.log_tail()} (full log: {service.log})"
                )
            ok, detail = service.healthy()
            if ok:
                return detail
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{name} not healthy after {timeout_s:.0f}s: {detail}; see {service.log}")
            time.sleep(0.5)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Servers first (in parallel), then the worker; raises ServiceFailed (after stopping all) on failure."""
        try:
            for name in ("prefect", "mlflow"):
                self.services[name].start(self.cwd)
            for name in ("prefect", "mlflow"):
                note = self.services[name].note
                self.echo(f"{name}: healthy at {self.wait_healthy(name, timeout_s)}" + (f"; {note}" if note else ""))
            self.services["worker"].start(self.cwd)
            self.echo(f"worker: {self.wait_healthy('worker', timeout_s)}")
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 20.0) -> None:
        for name in ("worker", "mlflow", "prefect"):
            service = self.services[name]
            if service.running():
                self.echo(f"stopping {name}")
                service.stop(grace_s)

    def watch(self, poll_s: float = 2.0) -> str:
        """Block until a service exits; returns its name (Ctrl-C raises KeyboardInterrupt to the caller)."""
        while True:
            for service in self.services.values():
                if not service.running():
                    return service.name
            time.sleep(poll_s)


def check(settings: StackSettings) -> list[tuple[str, bool, str]]:
    return [("prefect", *prefect_health(settings)), ("mlflow", *mlflow_health(settings)), ("worker", *worker_health(settings))]
