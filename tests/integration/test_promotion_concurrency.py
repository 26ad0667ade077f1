"""The promotion mutex and audit-first records through a real `mlflow server` on loopback, with PostgreSQL behind
it (the production set-up: `textclf serve --mlflow-backend-uri postgresql://...`) and once more with sqlite.

- 3 processes x 20 rounds, each round registering an evaluated version and promoting it (`promote_version`):
  after every round exactly one champion (checked by each process right after its own promotion) and at the end
  the alias equals the last committed record, `seq` is 1..60 without gaps or repeats, the chain unbroken, and
  `rollback` restores the true previous champion.
- kill -9 of a promotion paused by the TEXTCLF_PROMOTION_PAUSE_AT test hook at each step: after registration (a
  pipeline promotion; its retry registers nothing new and decides once), after the pending record, after the alias
  move and before the commit (the real CLI): `registry history` / `registry verify` settle the record against the
  live alias; a move of the alias outside textclf is reported by `verify` with a non-zero exit.

Real processes and servers; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from real_servers import mlflow_server, start_postgres

from textclf import promotion
from textclf.config import build_config
from textclf.settings import telemetry_off_env

PROCESSES, ROUNDS = 3, 20

# One promoting process: registers an evaluated version per round and makes it the champion by hand; right after
# each of its promotions it reads who holds the alias (another process may have moved it since: checked later).
WORKER = """
import json, sys
from mlflow.tracking import MlflowClient
from textclf import promotion
from textclf.config import build_config
sys.path.insert(0, sys.argv[6])
from test_promotion_concurrency import holders, new_version
url, name, rounds, worker, out = sys.argv[1:6]
cfg = build_config({"output_dir": out + ".d", "tracking": {"tracking_uri": url},
                    "registry": {"model_name": name, "lock_timeout_s": 300, "lock_lease_s": 60}})
client = MlflowClient(tracking_uri=url, registry_uri=url)
done = []
for i in range(int(rounds)):
    version = new_version(client, name)
    record = promotion.promote_version(cfg.registry_target(), cfg.evaluate, version, f"{worker} round {i}",
                                       trigger=f"proc:{worker}", actor=worker)
    done.append({"seq": record.seq, "version": version, "previous": record.previous_champion,
                 "holders_after": holders(client, name)})
with open(out, "w") as fh:
    json.dump(done, fh)
"""


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


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def server(request, tmp_path_factory):
    """`textclf serve`'s MLflow server on a free loopback port with PostgreSQL (or sqlite) behind it; its URL."""
    state = tmp_path_factory.mktemp(f"mlflow-{request.param}")
    database = start_postgres() if request.param == "postgresql" else None
    try:
        mlflow = mlflow_server(state, database.uri if database else None)
        try:
            if database is not None:  # the store password is in the server's environment only, not in `ps`
                lines = mlflow.command_lines()
                assert lines and not [line for line in lines if database.password in line]
            yield mlflow.url
        finally:
            mlflow.kill()
    finally:
        if database is not None:
            database.stop()


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
            log, _ = proc.communicate(timeout=900)
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
    by_seq = {r.seq: r for r in records}
    for mine in results:  # after each round one champion, one that a committed record at or after it left
        assert len(mine["holders_after"]) == 1, mine
        assert mine["holders_after"][0] in {r.champion_after for r in records if r.seq >= mine["seq"]}, mine
        assert by_seq[mine["seq"]].candidate_version == mine["version"]
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


def kill_when_paused(proc: subprocess.Popen, marker: Path, point: str) -> None:
    """Wait (bounded) until `proc` reports it paused at `point` (the test hook's marker file), then kill -9 it."""
    deadline = time.monotonic() + 120
    while not marker.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"promotion never paused at {point}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    assert marker.read_text().split() == [str(proc.pid), point]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def pause_env(tmp_path: Path, point: str) -> tuple[dict[str, str], Path]:
    marker = tmp_path / f"paused-{point}"
    return {"TEXTCLF_PROMOTION_PAUSE_AT": point, "TEXTCLF_PROMOTION_PAUSE_FILE": str(marker)}, marker


def killed_at(url: str, name: str, tmp_path: Path, version: str, point: str) -> None:
    """Start `registry promote VERSION` paused at `point` (the test hook), wait for its marker, kill -9 it."""
    env, marker = pause_env(tmp_path, point)
    proc = cli(url, name, tmp_path, "registry", "promote", version, "--reason", f"killed at {point}", env=env, wait=False)
    kill_when_paused(proc, marker, point)


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)  # the production store; the race runs on both
def test_a_promotion_killed_at_each_step_is_reconciled_or_reported(server, tmp_path):
    name = "killed"
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    cfg, reg = target(server, name, tmp_path, lock_lease_s=3, lock_timeout_s=60)
    first, second, third, fourth = (new_version(client, name) for _ in range(4))
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

    # After the alias move was checked, right before the commit: committed (reconciled) by `registry history`.
    killed_at(server, name, tmp_path, fourth, "before-commit")
    assert holders(client, name) == [fourth]
    time.sleep(3.5)  # the dead holder's lease expires
    shown = cli(server, name, tmp_path, "registry", "history")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "[committed (reconciled)] killed at before-commit" in shown.stdout.splitlines()[-1], shown.stdout
    assert [(r.seq, r.state) for r in promotion.history(reg)][-1] == (5, "committed")
    assert promotion.verify(reg).problems == []

    # A move outside textclf: reported, non-zero exit, one line.
    client.set_registered_model_alias(name, "champion", second)
    checked = cli(server, name, tmp_path, "registry", "verify")
    assert checked.returncode == 1
    assert checked.stdout.strip().splitlines() == [
        f"unaudited: @champion of {name} is v{second} but the last committed record (seq 5) left v{fourth}"
    ]
    assert "1 alias move(s) of killed without a committed audit record" in checked.stderr


# A pipeline promotion (register + gate) of one training run, as the promote task runs it; prints the outcome.
PIPELINE_PROMOTION = """
import json, sys
from textclf import promotion
from textclf.config import build_config
from textclf.evaluate import evaluate_model
url, name, run_id, model_dir, data_dir, out = sys.argv[1:7]
cfg = build_config({"output_dir": out, "tracking": {"tracking_uri": url},
                    "evaluate": {"latency_samples": 5, "throughput_texts": 32, "mistakes_top_k": 5,
                                 "max_latency_p95_ms": 60000},
                    "registry": {"model_name": name, "lock_lease_s": 3, "lock_timeout_s": 60}})
report = evaluate_model(model_dir, data_dir, "test", 16, 64, settings=cfg.evaluate)
outcome = promotion.register_and_promote(cfg.registry_target(), cfg.evaluate, run_id, model_dir, report, {}, data_dir,
                                         "kill-test", batch_size=16)
print("OUTCOME " + json.dumps(outcome.to_dict()))
"""


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)  # the production store; the race runs on both
def test_a_pipeline_promotion_killed_after_registration_is_retried_into_one_version_and_one_decision(
    server, tmp_path, tiny_classifier, splits_dir
):
    """kill -9 right after the version is registered (before any decision): nothing to reconcile, `verify` is
    clean, and the retry of the same training run registers nothing new and takes exactly one decision."""
    name = "killed-registered"
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    run_id = client.create_run(client.create_experiment(f"train-{name}")).info.run_id
    args = [sys.executable, "-c", PIPELINE_PROMOTION, server, name, run_id, str(tiny_classifier), str(splits_dir)]
    args.append(str(tmp_path / "outputs"))
    env = {**os.environ, **telemetry_off_env()}
    pause, marker = pause_env(tmp_path, "registered")
    kill_when_paused(
        subprocess.Popen(args, env={**env, **pause}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        marker,
        "registered",
    )

    cfg, reg = target(server, name, tmp_path)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert holders(client, name) == [] and promotion.history(reg) == []
    assert promotion.verify(reg).problems == []  # registered, undecided: no alias move to account for

    retry = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-3000:]
    outcome = json.loads(retry.stdout.split("OUTCOME ", 1)[1])
    assert outcome["version"] == "1" and outcome["promoted"] and outcome["reason"] == "passes thresholds; no champion yet"
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    records = promotion.history(reg)
    assert [(r.seq, r.action, r.state, r.candidate_version) for r in records] == [(1, "gate", "committed", "1")]
    assert holders(client, name) == ["1"] and promotion.verify(reg).problems == []
