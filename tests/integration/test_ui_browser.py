"""A data scientist's path through the UIs, in headless Debian chromium driven by playwright-core:
Prefect deployments -> retrain/manual -> Custom run form -> change one field -> submit -> the MLflow run page.

Screenshots: outputs/test-artifacts/ui/*.png (kept after the run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
E2E_DIR = REPO / "tests" / "e2e"
UI_SHOTS = REPO / "outputs" / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.slow


def _driver_missing() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (infra/apt-packages.txt; run `make setup`)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (Debian chromium, infra/apt-packages.txt; run `make setup`)"
    if not (E2E_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (infra/setup.d/browser.sh; run `make setup`)"
    return None


@pytest.fixture(scope="session")
def browser_driver() -> None:
    """Checked before the stack starts (session scope, first argument), so a broken set-up fails in seconds.
    Set-up installs the driver or fails: a missing one is a broken set-up, never a reason to skip."""
    missing = _driver_missing()
    if missing:
        pytest.fail(missing)


def node(*args: str, timeout_s: int = 240) -> dict:
    """Run the driver; every wait inside it is bounded (60 s), and so is the whole run."""
    out = subprocess.run(
        ["node", "ui_run.mjs", *args],
        cwd=E2E_DIR,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    assert out.returncode == 0, f"browser driver failed: {out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_run_started_from_the_prefect_form_opens_in_mlflow(browser_driver, stack, prefect_client, mlflow_client, wait_final):
    shutil.rmtree(UI_SHOTS, ignore_errors=True)
    UI_SHOTS.mkdir(parents=True)
    manual = prefect_client.read_deployment_by_name("retrain/manual")

    submitted = node("submit", stack.prefect_url, str(manual.id), "Reason", "started from the UI form", str(UI_SHOTS))
    run = wait_final(submitted["flow_run_id"], timeout_s=300)
    assert submitted["flow_run_name"] == run.name
    assert run.state.is_completed(), run.state.message
    assert run.parameters["form"]["reason"] == "started from the UI form"  # the field set in the form

    experiment = mlflow_client.get_experiment_by_name("textclf")
    (ml_run,) = mlflow_client.search_runs([experiment.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{run.id}'")
    assert ml_run.data.tags["run.reason"] == "started from the UI form"
    url = f"{stack.mlflow_url}/#/experiments/{experiment.experiment_id}/runs/{ml_run.info.run_id}"
    # Rendered means this run's name, its id and one of its metrics are on the page.
    metric = sorted(ml_run.data.metrics)[0]
    page = node("shot", url, str(UI_SHOTS / "06-mlflow-run.png"), run.name, ml_run.info.run_id, metric)
    assert ml_run.info.run_id in page["url"]
    shots = sorted(p.name for p in UI_SHOTS.glob("*.png"))  # no *-failed.png
    assert shots == [
        "01-deployments.png",
        "02-deployment.png",
        "03-custom-run-form.png",
        "04-field-filled.png",
        "05-flow-run.png",
        "06-mlflow-run.png",
    ]
