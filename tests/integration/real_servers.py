"""Real servers on loopback for the integration tests, started the way production starts them.

- PostgreSQL: Debian's server binaries (infra/apt-packages.txt), a cluster initialised in a temporary data folder,
  run as its own user (`postgres` when the tests run as root: initdb refuses root), TCP on a free loopback port
  only, password (scram-sha-256) authentication.
- `mlflow server`: the very service `textclf serve` builds (`textclf.serve.build_services`): the backend store URI,
  with its password, reaches the server through its environment, never its command line.

Every wait is bounded; a server that does not come up fails the test with the tail of its log.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from textclf.serve import Service, StackSettings, build_services

PG_USER = "postgres"  # the system user the server runs as when the tests run as root
DB_USER, DB_NAME = "mlflow", "mlflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them in /usr/lib/postgresql/<major>/bin, off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise AssertionError(f"PostgreSQL's {name} not found: run `make setup` (apt package postgresql, infra/apt-packages.txt)")
    return path


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


@dataclass
class Postgres:
    root: Path
    port: int
    password: str
    proc: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"postgresql://{DB_USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DB_NAME}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then whatever is left of the group; the data folder goes."""
        for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(timeout_s: float = 90.0) -> Postgres:
    """initdb + postgres in a fresh temporary folder on a free loopback port; the `mlflow` database created."""
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="textclf-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam(PG_USER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", PG_USER, "--"]
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "postgres.log"
    init = subprocess.run(
        [*as_user, pg_bin("initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"]
        + ["--encoding=UTF8", "--no-locale", "--no-instructions"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    pwfile.unlink()
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(f"initdb failed: {init.stderr[-2000:]}")
    port = free_port()
    cmd = [*as_user, pg_bin("postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
    cmd += ["-c", "unix_socket_directories=", "-c", "max_connections=200"]  # TCP only; mlflow pools per worker
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Postgres(root, port, password, proc)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=DB_USER,
                password=password,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            )
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = _tail(log)
                server.stop()
                raise AssertionError(f"postgres did not start: {text}") from None
            time.sleep(0.2)
    with conn:
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return server


@dataclass
class MlflowServer:
    service: Service
    url: str
    port: int

    def start(self, timeout_s: float = 180.0) -> None:
        """Start (or restart, on the same port) and wait until GET /health answers."""
        self.service.start(self.service.log.parent)
        deadline = time.monotonic() + timeout_s
        while not self.service.healthy()[0]:
            if not self.service.running() or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"mlflow server did not start: {self.service.log_tail(20)}")
            time.sleep(0.3)

    def kill(self) -> None:
        """kill -9 of the server's whole process group: an outage, not a shutdown."""
        proc = self.service.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def command_lines(self) -> list[str]:
        """The command lines of every process in the server's group (what `ps` shows anyone on the host)."""
        proc = self.service.proc
        assert proc is not None
        lines = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.getpgid(int(pid)) == proc.pid:
                    lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
        return lines


def mlflow_server(state_dir: Path, backend_uri: str | None = None, port: int | None = None) -> MlflowServer:
    """`textclf serve`'s MLflow service (sqlite in `state_dir` unless `backend_uri`), started and healthy."""
    port = port or free_port()
    settings = StackSettings(mlflow_port=port, state_dir=state_dir, mlflow_backend_uri=backend_uri)
    # no background job runner: more processes that only slow the start on a loaded machine
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    service = next(s for s in build_services(settings, [], env) if s.name == "mlflow")
    server = MlflowServer(service, settings.mlflow_url, port)
    server.start()
    return server
