#!/usr/bin/env bash
# One MPNet-base fine-tune epoch on a GPU through the pipeline's own runner (torchrun, bf16), then the test split:
# prints samples/s, tokens/s, MFU and test accuracy, and writes bench/results/gpu_check.json.
#
#   bash bench/gpu_check.sh [EPOCHS]        (default 1; needs `make setup` done with a CUDA build of torch)
#
# MFU = 6 x parameters x (padded tokens trained per second) / the GPU's dense bf16 peak (training: forward 2N,
# backward 4N FLOPs per token; attention's extra FLOPs are left out, so this slightly understates it). Peaks
# (TFLOP/s, dense bf16): H100/H200 SXM 989, A100 312, L40S 362, L4 121, A10 125; another GPU: PEAK_TFLOPS=...
# The split is the demo's (packaged corpus, seed 42), so the accuracy compares with README's CPU figures.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-1}"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "gpu_check: no .venv; run make setup first" >&2; exit 1; }
"$PY" - <<'EOF' || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no GPU; install a CUDA build of torch into .venv")
print(f"gpu_check: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}")
EOF
OUT="$(mktemp -d /tmp/gpu-check.XXXXXX)"
SET=(--set "output_dir=$OUT/outputs" --set data.source=packaged:rotten_tomatoes --set train.kind=finetune
     --set train.model=packaged:all-mpnet-base-v2 --set train.precision=bf16 --set "train.epochs=$EPOCHS"
     --set train.freeze_embeddings=false --set train.learning_rate=3e-5 --set train.batch_size=64)
.venv/bin/textclf ingest --out "$OUT/data" "${SET[@]}"
started=$(date +%s.%N)
.venv/bin/textclf train --data "$OUT/data/splits" --out "$OUT/train" "${SET[@]}" | tail -n 40
ended=$(date +%s.%N)
.venv/bin/textclf evaluate --model-dir "$OUT/train/model" --data "$OUT/data/splits" --out "$OUT/eval" "${SET[@]}" >/dev/null
OUT="$OUT" STARTED="$started" ENDED="$ended" "$PY" - <<'EOF'
import json, os, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
sys.path.insert(0, "bench")
from common import write_results
out = Path(os.environ["OUT"])
result = json.loads((out / "train" / "result.json").read_text())
test = json.loads((out / "eval" / "test_metrics.json").read_text())
params = sum(t.numel() for t in load_file(str(out / "train" / "model" / "model.safetensors")).values())
name = torch.cuda.get_device_name(0)
peaks = {"H100": 989, "H200": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125}
peak = float(os.environ.get("PEAK_TFLOPS") or next((v for k, v in peaks.items() if k in name), 0))
runtime = result["train_runtime_s"]
tokens_s = result["tokens_padded"] / runtime if runtime else 0.0
mfu = 6 * params * tokens_s / (peak * 1e12 * result["world_size"]) if peak else None
accuracy = test.get("accuracy", test.get("metrics", {}).get("accuracy"))
print(f"gpu_check: {name}: {result['train_samples_per_s']:.1f} samples/s, {tokens_s:,.0f} tokens/s (padded), "
      f"MFU {mfu:.1%} of {peak:.0f} TFLOP/s" if mfu is not None else f"gpu_check: MFU n/a (set PEAK_TFLOPS)")
print(f"gpu_check: test accuracy {accuracy:.4f}; training {runtime:.0f}s, launch to end {float(os.environ['ENDED']) - float(os.environ['STARTED']):.0f}s")
write_results("gpu_check", {"gpu": name, "world_size": result["world_size"], "params": params, "peak_tflops": peak},
              {"mfu": {"reference": peak, "ours": mfu, "unit": "share of dense bf16 peak", "ratio": None},
               "samples_per_s": {"reference": None, "ours": result["train_samples_per_s"], "unit": "samples/s", "ratio": None},
               "test_accuracy": {"reference": None, "ours": accuracy, "unit": "test accuracy", "ratio": None}})
EOF
