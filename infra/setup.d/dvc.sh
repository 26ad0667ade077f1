#!/usr/bin/env bash
# DVC: a default local remote and the tracked data folder (data/raw, versioned by data.dvc).
# The remote is ../textclf-dvc-remote beside the checkout (see .dvc/config); set TEXTCLF_DVC_REMOTE
# to use another folder (written to .dvc/config.local, not committed). S3 and others: infra/dvc.md.
# Then `textclf data seed` pulls the version data.dvc records, or, on a first set-up where no remote
# holds it yet, exports the packaged corpus to data/raw and commits + pushes it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
export DVC_NO_ANALYTICS=1
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "setup: dvc: not a git checkout; skipping the DVC data set-up"
  exit 0
fi
if [ -n "${TEXTCLF_DVC_REMOTE:-}" ]; then
  mkdir -p "$TEXTCLF_DVC_REMOTE"
  "$VENV/bin/dvc" remote modify --local local url "$(cd "$TEXTCLF_DVC_REMOTE" && pwd)"
else
  mkdir -p ../textclf-dvc-remote
fi
"$VENV/bin/textclf" data seed
