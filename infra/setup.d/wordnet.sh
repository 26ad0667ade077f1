#!/usr/bin/env bash
# WordNet 3.0 for NLTK from Debian's wordnet-base + wordnet-sense-index (see infra/apt-packages.txt).
# NLTK needs three things Debian does not give it: the `lexnames` file, real files (NLTK 3.10 refuses
# symlinks that leave its corpus root) and the layout <root>/corpora/wordnet. The root is
# $VENV/share/nltk_data, which NLTK searches by default for the venv's interpreter. Idempotent.
set -euo pipefail
VENV=${VENV:-.venv}
SRC=${WORDNET_DIR:-/usr/share/wordnet}
DEST="$VENV/share/nltk_data/corpora/wordnet"

if [ ! -f "$SRC/data.noun" ] || [ ! -f "$SRC/index.sense" ]; then
  echo "wordnet.sh: WordNet files missing in $SRC; apt-get install wordnet-base wordnet-sense-index" >&2
  exit 1
fi
mkdir -p "$DEST"
for f in "$SRC"/*; do
  name=$(basename "$f")
  # -L: copy the file a Debian symlink points to, never the link itself.
  if ! cmp -s "$f" "$DEST/$name" 2>/dev/null; then
    cp -L "$f" "$DEST/$name.tmp"
    mv -f "$DEST/$name.tmp" "$DEST/$name"
  fi
done

# WordNet's standard lexicographer files, index 00..44; pos: noun 1, verb 2, adj 3, adv 4.
names="adj.all:3 adj.pert:3 adv.all:4 noun.Tops:1 noun.act:1 noun.animal:1 noun.artifact:1 noun.attribute:1
noun.body:1 noun.cognition:1 noun.communication:1 noun.event:1 noun.feeling:1 noun.food:1 noun.group:1
noun.location:1 noun.motive:1 noun.object:1 noun.person:1 noun.phenomenon:1 noun.plant:1 noun.possession:1
noun.process:1 noun.quantity:1 noun.relation:1 noun.shape:1 noun.state:1 noun.substance:1 noun.time:1
verb.body:2 verb.change:2 verb.cognition:2 verb.communication:2 verb.competition:2 verb.consumption:2
verb.contact:2 verb.creation:2 verb.emotion:2 verb.motion:2 verb.perception:2 verb.possession:2 verb.social:2
verb.stative:2 verb.weather:2 adj.ppl:3"
i=0
: > "$DEST/lexnames.tmp"
for entry in $names; do
  printf '%02d\t%s\t%s\n' "$i" "${entry%%:*}" "${entry##*:}" >> "$DEST/lexnames.tmp"
  i=$((i + 1))
done
mv -f "$DEST/lexnames.tmp" "$DEST/lexnames"
[ "$i" -eq 45 ] || { echo "wordnet.sh: wrote $i lexnames, expected 45" >&2; exit 1; }
echo "wordnet.sh: WordNet ready in $DEST"
