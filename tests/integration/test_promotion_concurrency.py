"""The promotion mutex and audit-first records through a real `mlflow server` (sqlite behind it) on loopback.

- 3 processes x 3 rounds, each round registering an evaluated version and promoting it (`promote_version`):
  afterwards one champion, the alias equals the last committed record, `seq` is 1..9, the chain unbroken,
  and `rollback` restores the true previous champion.
- kill -9 of a promotion (the real CLI in a subprocess) paused by the TEXTCLF_PROMOTION_PAUSE_AT test hook after
  its pending record and after its alias move: `registry history` / `registry verify` settle the record against
  the live alias; a move of the alias outside textclf is reported by `verify` with a non-zero exit.

Real processes and servers; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textclf import promotion
from textclf.config import build_config
from textclf.serve import http_get
from textclf.settings import telemetry_off_env

PROCESSES, ROUNDS = 3, 3

# One promoting process: registers an evaluated version per round and makes it the champion by hand.
WORKER = """
import json, sys
from mlflow.tracking import MlflowClient
from textclf import promotion
from textclf.config import build_config
sys.path.insert(0, sys.argv[6])
from test_promotion_concurrency import new_version
url, name, rounds, worker, out = sys.argv[1:6]
cfg = build_config({"output_dir": out + ".d", "tracking": {"tracking_uri": url},
                    "registry": {"model_name": name, "lock_timeout_s": 150, "lock_lease_s": 60}})
client = MlflowClient(tracking_uri=url, registry_uri=url)
done = []
for i in range(int(rounds)):
    version = new_version(client, name)
    record = promotion.promote_version(cfg.registry_target(), cfg.evaluate, version, f"{worker} round {i}",
                                       trigger=f"proc:{worker}", actor=worker)
    done.append({"seq": record.seq, "version": version, "previous": record.previous_champion})
with open(out, "w") as fh:
    json.dump(done, fh)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_version(client: MlflowClient, name: str) -> str:
    """A registered version carrying the evaluation tags the human promotion requires (no model is loaded)."""
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    found = client.get_experiment_by_name("sources")
    try:
        experiment = found.experiment_id if found else client.create_experiment("sources")
    except MlflowException:  # created by another worker meanwhile
        again = client.get_experiment_by_name("sources")
        assert again is not None
        experiment = again.experiment_id
    run = client.create_run(experiment)
    tags = {"eval.report": f"runs:/{run.info.run_id}/evaluation/eval.json", "eval.accuracy": "0.9", "eval.macro_f1": "0.9"}
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(name, source=source, run_id=run.info.run_id, tags=tags).version)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a sqlite store on a free loopback port, in its own process group; yields its URL."""
    store = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(store / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "2"]
    env = {**os.environ, **telemetry_off_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = store / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while http_get(f"{url}/health", timeout_s=2)[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def target(url: str, name: str, tmp_path: Path, **registry):
    cfg = build_config(
        {"output_dir": str(tmp_path / "outputs"), "tracking": {"tracking_uri": url}, "registry": {"model_name": name, **registry}}
    )
    return cfg, cfg.registry_target()


def holders(client: MlflowClient, name: str, alias: str = "champion") -> list[str]:
    """The versions the registry says hold `alias` (one at most by MLflow's construction; asserted anyway)."""
    return [str(v) for a, v in (client.get_registered_model(name).aliases or {}).items() if a == alias]


def test_three_processes_promoting_through_one_server_keep_one_audited_champion(server, tmp_path):
    name = "concurrent"
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    here = str(Path(__file__).parent)
    env = {**os.environ, **telemetry_off_env()}
    procs = []
    for k in range(PROCESSES):
        out = tmp_path / f"worker{k}.json"
        args = [sys.executable, "-c", WORKER, server, name, str(ROUNDS), f"w{k}", str(out), here]
        procs.append((subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    results = []
    try:
        for proc, out in procs:
            log, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, log[-3000:]
            results += json.loads(out.read_text())
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    cfg, reg = target(server, name, tmp_path)
    records = promotion.history(reg)
    assert len(records) == PROCESSES * ROUNDS == len(results)
    assert [r.seq for r in records] == list(range(1, PROCESSES * ROUNDS + 1))  # no gaps, no repeats
    assert sorted(r["seq"] for r in results) == [r.seq for r in records]
    assert all(r.state == "committed" for r in records)
    for before, after in zip(records, records[1:], strict=False):  # each decision saw the champion the last one left
        assert after.previous_champion == before.champion_after, (before.line(), after.line())
    assert holders(client, name) == [records[-1].champion_after]  # exactly one champion, the audited one
    assert promotion.verify(reg).problems == []

    back = promotion.rollback(reg, cfg.evaluate, "rollback after the race")
    assert back.champion_after == records[-1].previous_champion == holders(client, name)[0]
    assert promotion.verify(reg).problems == []
    assert client.search_registered_models(f"name = '{name}.promotion-lock'") == []  # every lease released


def cli(url: str, name: str, tmp_path: Path, *args: str, env: dict | None = None, wait: bool = True):
    """The real `textclf` CLI against the server, as a subprocess (the lease lives 3 s: a killed holder expires fast)."""
    opts = ["-s", f"output_dir={tmp_path / 'cli'}", "-s", f"tracking.tracking_uri={url}", "-s", f"registry.model_name={name}"]
    opts += ["-s", "registry.lock_lease_s=3", "-s", "registry.lock_timeout_s=60"]
    cmd = [sys.executable, "-m", "textclf.cli", *args, *opts]
    full = {**os.environ, **telemetry_off_env(), **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120)


def killed_at(url: str, name: str, tmp_path: Path, version: str, point: str) -> None:
    """Start `registry promote VERSION` paused at `point` (the test hook), wait for its marker, kill -9 it."""
    marker = tmp_path / f"paused-{point}"
    env = {"TEXTCLF_PROMOTION_PAUSE_AT": point, "TEXTCLF_PROMOTION_PAUSE_FILE": str(marker)}
    proc = cli(url, name, tmp_path, "registry", "promote", version, "--reason", f"killed at {point}", env=env, wait=False)
    deadline = time.monotonic() + 90
    while not marker.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"promotion never paused at {point}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    assert marker.read_text().split()[0] == str(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_promotion_killed_at_each_step_is_reconciled_or_reported(server, tmp_path):
    name = "killed"
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    cfg, reg = target(server, name, tmp_path, lock_lease_s=3, lock_timeout_s=60)
    first, second, third = (new_version(client, name) for _ in range(3))
    promotion.promote_version(reg, cfg.evaluate, first, "the first champion")

    # After the pending record, before the alias move: the alias did not move -> aborted.
    killed_at(server, name, tmp_path, second, "pending")
    assert holders(client, name) == [first]
    time.sleep(3.5)  # the dead holder's lease expires; history settles the record only when no promotion holds it
    shown = cli(server, name, tmp_path, "registry", "history")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "[aborted (reconciled)] killed at pending" in shown.stdout.splitlines()[-1], shown.stdout
    assert [r.state for r in promotion.history(reg)] == ["committed", "aborted"]

    # After the alias move, before the commit: the move happened -> committed (reconciled), by `registry verify`.
    killed_at(server, name, tmp_path, third, "alias-moved")
    assert holders(client, name) == [third]
    checked = cli(server, name, tmp_path, "registry", "verify")  # waits for the lease, then reconciles
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    lines = checked.stdout.strip().splitlines()
    assert lines[0] == f"reconciled: seq 3 promote v{third} was pending -> committed", lines
    assert lines[-1].startswith(f"ok: @champion of {name} is v{third}, as committed record seq 3 left it")
    assert [(r.seq, r.state, r.reconciled) for r in promotion.history(reg)] == [
        (1, "committed", False),
        (2, "aborted", True),
        (3, "committed", True),
    ]
    back = promotion.rollback(reg, cfg.evaluate, "the reconciled move is undone")  # the stack follows committed records
    assert back.champion_after == first and holders(client, name) == [first]

    # A move outside textclf: reported, non-zero exit, one line.
    client.set_registered_model_alias(name, "champion", second)
    checked = cli(server, name, tmp_path, "registry", "verify")
    assert checked.returncode == 1
    assert checked.stdout.strip().splitlines() == [
        f"unaudited: @champion of {name} is v{second} but the last committed record (seq 4) left v{first}"
    ]
    assert "1 alias move(s) of killed without a committed audit record" in checked.stderr
