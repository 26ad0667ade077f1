"""The service as deployed: real Prefect + MLflow servers and the deployments' serve process (`textclf serve`).

One session stack (tests/integration/conftest.py); the manual run trains once and the later tests build on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def deployment(client, name: str):
    return client.read_deployment_by_name(f"retrain/{name}")


def params(client, changes: dict, name: str = "manual") -> dict:
    """The deployment's run form with `changes`, as the UI form submits it (the parameter replaces the whole
    form, so start from the deployment's)."""
    return {"form": {**deployment(client, name).parameters["form"], **changes}}


def csrf_headers(api: str, client_id: str = "textclf-tests") -> dict[str, str]:
    """What Prefect's client sends with a state-changing request once the server has CSRF protection on."""
    resp = httpx.get(f"{api}/csrf-token", params={"client": client_id}, timeout=30)
    assert resp.status_code == 200, resp.text
    return {"Prefect-Csrf-Token": resp.json()["token"], "Prefect-Csrf-Client": client_id}


def artifacts_of(client, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    by_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    found = client.read_artifacts(artifact_filter=by_run)
    return {a.key: a for a in found if a.key}


@pytest.fixture(scope="module")
def manual_run(prefect_client, service_config, wait_final):
    """retrain/manual triggered through the client with parameters; waits until it is final."""
    changed = params(prefect_client, {"reason": "first manual run"})
    run = prefect_client.create_flow_run_from_deployment(deployment(prefect_client, "manual").id, parameters=changed)
    return wait_final(run.id, timeout_s=300)


def test_serve_check_reports_every_service_healthy(stack):
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "textclf"),
            "serve",
            "--check",
            "--prefect-port",
            str(stack.prefect_port),
            "--mlflow-port",
            str(stack.mlflow_port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["prefect", "ok"], ["mlflow", "ok"], ["worker", "ok"]]
    assert "retrain/manual: READY" in out.stdout


def test_deployments_carry_the_run_form_and_the_weekly_cron(prefect_client, stack, service_config):
    manual = deployment(prefect_client, "manual")
    schema = manual.parameter_openapi_schema
    assert list(schema["properties"]) == ["form"]
    form = next(iter(schema["definitions"].values()))
    assert list(form["properties"]) == ["data_source", "model", "kind", "epochs", "learning_rate", "augment", "distill", "reason"]
    assert form["additionalProperties"] is False
    epochs = form["properties"]["epochs"]
    assert epochs["description"].startswith("Training epochs") and epochs["exclusiveMinimum"] == 0
    assert manual.enforce_parameter_schema and not manual.schedules
    # The form shows the worker's values; the infrastructure settings are nowhere in the deployment's parameters.
    assert manual.parameters["form"]["data_source"] == service_config["data"]["source"]
    assert manual.parameters["form"]["epochs"] == service_config["train"]["epochs"]
    assert stack.mlflow_url not in str(manual.parameters)

    scheduled = deployment(prefect_client, "scheduled")
    (sched,) = scheduled.schedules
    assert (sched.schedule.cron, sched.schedule.timezone, sched.active) == ("0 3 * * 1", "UTC", True)
    # The server computes the next runs from the cron.
    resp = httpx.post(
        f"{stack.prefect_api}/deployments/{scheduled.id}/schedule",
        json={"min_runs": 3},
        headers=csrf_headers(stack.prefect_api),
        timeout=30,
    )
    assert resp.status_code < 300, resp.text
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    upcoming = prefect_client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[scheduled.id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
    )
    starts = sorted(r.expected_start_time for r in upcoming)
    assert len(starts) >= 3
    assert all((s.weekday(), s.hour, s.minute) == (0, 3, 0) for s in starts)
    gaps_days = [round((b - a).total_seconds() / 86400) for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps_days == [7] * (len(starts) - 1)


def test_bad_or_infrastructure_parameters_are_refused_at_submission(prefect_client, service_config, mlflow_client, wait_final):
    from prefect.exceptions import PrefectHTTPStatusError

    manual = deployment(prefect_client, "manual")

    def refused(parameters: dict) -> str:
        with pytest.raises(PrefectHTTPStatusError) as err:
            prefect_client.create_flow_run_from_deployment(manual.id, parameters=parameters)
        assert err.value.response.status_code == 409, err.value.response.text
        return err.value.response.text

    text = refused(params(prefect_client, {"epochs": -1}))
    assert "-1" in text and "epochs" in text
    refused(params(prefect_client, {"epoch": 2}))  # a typo
    # What the worker talks to and where it writes is the deployment's, never the form's.
    for infra in ("tracking_uri", "artifact_location", "output_dir", "cache_dir", "dask_address"):
        assert infra in refused(params(prefect_client, {infra: "http://attacker.example:5000"}))
    # A parameter beside the form: Prefect's schema check covers declared parameters only, so the run is created,
    # and it ends at parameter binding (the run process exits: Crashed), before any task: no MLflow run.
    attack = {"config": {**service_config, "tracking": {"tracking_uri": "http://attacker.example:5000"}}}
    run = prefect_client.create_flow_run_from_deployment(manual.id, parameters=attack)
    done = wait_final(run.id, timeout_s=120)
    assert done.state.is_crashed() or done.state.is_failed(), done.state
    experiment = mlflow_client.get_experiment_by_name("textclf")
    if experiment is not None:
        assert not mlflow_client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{run.id}'")


def test_manual_run_lands_in_mlflow_with_artifacts_and_a_promotion_notice(
    manual_run, prefect_client, mlflow_client, receiver, stack
):
    assert manual_run.state.is_completed(), manual_run.state.message
    runs = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("textclf").experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{manual_run.id}'",
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags["run.reason"] == "first manual run"  # the form given at trigger time
    assert run.data.params["train.logging_steps"] == "2" and run.data.params["tracking.tracking_uri"] == stack.mlflow_url
    assert "textclf.run_key" in run.data.tags
    versions = mlflow_client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert [v.name for v in versions] == ["textclf"]
    assert mlflow_client.get_model_version_by_alias("textclf", "champion").run_id == run.info.run_id

    arts = artifacts_of(prefect_client, manual_run.id)
    assert {
        "validation-report",
        "training-curve",
        "evaluation-summary",
        "promotion-decision",
        "mlflow-run",
        "registered-version",
    } <= set(arts)
    run_page = f"{stack.mlflow_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"({run_page})" in arts["mlflow-run"].data
    assert f"/#/models/textclf/versions/{versions[0].version})" in arts["registered-version"].data

    notice = receiver.wait_for(lambda m: "promoted" in m.get("subject", ""), timeout_s=10)
    assert f"v{versions[0].version}" in notice["subject"] and "champion" in notice["body"]


def test_unchanged_scheduled_run_is_skipped(manual_run, prefect_client, service_config, mlflow_client, wait_final):
    assert manual_run.state.is_completed()
    scheduled = deployment(prefect_client, "scheduled")
    experiment = mlflow_client.get_experiment_by_name("textclf").experiment_id
    # Same data and config as the manual run (a reason is not part of what makes a run new).
    same = params(prefect_client, {"reason": "weekly"}, name="scheduled")

    def trigger():
        run = prefect_client.create_flow_run_from_deployment(scheduled.id, parameters=same)
        return wait_final(run.id, timeout_s=300)

    first = trigger()
    if first.state.name != "Skipped":
        # Only a code change since the manual run may retrain (a tree being edited while the test runs).
        assert first.state.is_completed(), first.state.message
        (trained,) = mlflow_client.search_runs([experiment], f"tags.`prefect.flow_run_id` = '{first.id}'")
        (before,) = mlflow_client.search_runs([experiment], f"tags.`prefect.flow_run_id` = '{manual_run.id}'")
        assert trained.data.tags["textclf.run_key.code"] != before.data.tags["textclf.run_key.code"]
        assert trained.data.tags["textclf.run_key.data"] == before.data.tags["textclf.run_key.data"]
    second = first if first.state.name == "Skipped" else trigger()
    assert second.state.is_completed() and second.state.name == "Skipped"
    assert "unchanged since successful MLflow run" in second.state.message
    assert (second.end_time - second.start_time).total_seconds() < 60, "a skipped run does not train"
    assert not mlflow_client.search_runs([experiment], filter_string=f"tags.`prefect.flow_run_id` = '{second.id}'")


def test_failed_run_is_notified(prefect_client, service_config, receiver, wait_final):
    missing = params(prefect_client, {"data_source": "/nonexistent/reviews.csv"})
    run = prefect_client.create_flow_run_from_deployment(deployment(prefect_client, "manual").id, parameters=missing)
    done = wait_final(run.id, timeout_s=180)
    assert done.state.is_failed()
    notice = receiver.wait_for(lambda m: done.name in m.get("subject", ""), timeout_s=30)
    assert "failed" in notice["subject"] and "/nonexistent/reviews.csv" in notice["body"]


def test_retried_flow_run_reuses_its_persisted_results_and_mlflow_run(
    prefect_client, service_config, mlflow_client, wait_final, tmp_path
):
    import pandas as pd
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Scheduled

    # Fails at the data gate (12 rows, under validate.min_rows), after start-tracking, ingest and split completed.
    few = tmp_path / "twelve-rows.csv"
    pd.read_csv(service_config["data"]["source"]).groupby("label").head(6).to_csv(few, index=False)
    failing = params(prefect_client, {"data_source": str(few)})
    run = prefect_client.create_flow_run_from_deployment(deployment(prefect_client, "manual").id, parameters=failing)
    assert wait_final(run.id, timeout_s=180).state.is_failed()
    prefect_client.set_flow_run_state(run.id, Scheduled(), force=True)  # what the UI's Retry does
    retried = wait_final(run.id, timeout_s=180)
    assert retried.state.is_failed() and retried.run_count == 2, retried.state.message

    experiment = mlflow_client.get_experiment_by_name("textclf").experiment_id
    ml_runs = mlflow_client.search_runs([experiment], filter_string=f"tags.`prefect.flow_run_id` = '{run.id}'")
    assert len(ml_runs) == 1, "the retry reused the first attempt's MLflow run (and so its run folder)"
    task_runs = prefect_client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    states = {}
    for task_run in task_runs:
        states.setdefault(task_run.name.rsplit("-", 1)[0], []).append(task_run.state.name)
    for name in ("start-tracking", "ingest", "split"):
        assert sorted(states[name]) == ["Cached", "Completed"], (name, states)


def test_prefect_api_refuses_other_origins_and_requests_without_a_csrf_token(stack, prefect_client):
    probe = f"{stack.prefect_api}/flows/filter"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    foreign = httpx.options(probe, headers={"Origin": "http://evil.example:8080", **preflight}, timeout=30)
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    own = httpx.options(probe, headers={"Origin": stack.prefect_url, **preflight}, timeout=30)
    assert own.status_code == 200 and own.headers["access-control-allow-origin"] == stack.prefect_url

    bare = httpx.post(probe, json={}, timeout=30)
    assert bare.status_code == 403 and "CSRF" in bare.text
    assert httpx.post(probe, json={}, headers=csrf_headers(stack.prefect_api), timeout=30).status_code == 200
    # Prefect's own client fetches its token (the worker's did: the deployments above are READY)
    assert prefect_client.read_flows()
