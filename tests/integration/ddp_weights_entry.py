"""torchrun entry for test_distributed: train through `build_trainer` (the production path) with
dropout off, then every rank saves the weights it ends with."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from textclf.config import load_config
from textclf.train.finetune import build_trainer, dist_env

config, data, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
cfg = load_config(config)
trainer, _, _ = build_trainer(cfg.train, data, out, cfg.output_path / "cache" / "tokenized")
for module in trainer.model.modules():
    if isinstance(module, torch.nn.Dropout):
        module.p = 0.0
trainer.train()
rank = dist_env()[0]
state = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, str(out / f"rank{rank}.safetensors"))
