# textclf: two commands matter. `make demo` (set-up + the retrain flow on the embedded defaults)
# and `make test` (set-up + the whole test suite). Everything else is a detail.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
# Telemetry off for what starts here without textclf (mlflow ui, dvc): textclf.settings.TELEMETRY_OFF,
# the same names and values (tests/unit/test_settings.py checks).
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export HF_HUB_DISABLE_TELEMETRY ?= 1
export DVC_NO_ANALYTICS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false

.PHONY: setup demo test test-fast bench lint mlflow-ui serve clean repro

$(VENV)/.setup-done: infra/setup.sh infra/apt-packages.txt requirements.txt requirements-assets.txt pyproject.toml $(wildcard infra/setup.d/*.sh)
	bash infra/setup.sh
	touch $@

setup: $(VENV)/.setup-done

demo: setup
	$(VENV)/bin/textclf run

test: setup
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

bench: setup
	@for b in $(filter-out bench/common.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

# What .ci/run checks before `make test`: formatting, lint, types (mypy; [tool.mypy] in pyproject.toml).
# All three run; any failure fails the target.
lint: setup
	@rc=0; \
	echo "ruff format --check ."; $(VENV)/bin/ruff format --check . || rc=1; \
	echo "ruff check ."; $(VENV)/bin/ruff check . || rc=1; \
	echo "mypy"; $(VENV)/bin/mypy || rc=1; \
	exit $$rc

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db --host 127.0.0.1 --port 5000

# Prefect server + MLflow server + the retrain deployments' worker on 127.0.0.1; Ctrl-C stops all.
# `make serve ARGS="--check"` reports their health; ARGS="--config params.yaml" picks the config.
serve: setup
	$(VENV)/bin/textclf serve $(ARGS)

# The DVC pipeline (dvc.yaml) on the tracked data version (data.dvc); infra/dvc.md has the rest.
repro: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro $(ARGS)

clean:
	rm -rf outputs
