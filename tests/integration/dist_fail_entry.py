"""torchrun entry for test_distributed: rank 1 raises while rank 0 waits for it in a collective."""

import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from textclf.train.failures import recording_failures

run_dir = Path(sys.argv[1])
# A long collective timeout: ending the run must not depend on it.
dist.init_process_group("gloo", timeout=timedelta(seconds=900))
with recording_failures(run_dir):
    if dist.get_rank() == 1:
        raise ValueError("rank one broke on purpose")
    dist.all_reduce(torch.zeros(1))  # rank 0 would wait here for rank 1 forever
