"""Teacher logits, computed once per (teacher, data, tokenizer settings) and reused by every student run.

Key = sha256 of: every file of the teacher folder (weights, config, tokenizer), the texts in order,
and the teacher's tokenizer settings (max_length). A registry version, when known, is recorded
next to the logits for lineage; the key itself is content-based, so re-runs in new run folders hit.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from textclf.modeling import load_trained

LOGITS_VERSION = 1  # bump when the way logits are computed changes


def folder_digest(folder: Path) -> str:
    """sha256 over the names and bytes of every file in `folder` (sorted, recursive)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def cache_key(teacher_digest: str, data_digest: str, max_length: int) -> str:
    raw = f"v{LOGITS_VERSION}|{teacher_digest}|{data_digest}|max_length={max_length}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_logits(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    """Raw logits [N, C] in the order of `texts`; batches of length-sorted texts cut padding."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(
            device
        )
        out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


@dataclass
class CachedLogits:
    path: str  # .npy file, float32 [N, C]
    key: str
    hit: bool  # True when an earlier run had already computed them
    seconds: float
    meta: dict

    def to_dict(self) -> dict:
        return asdict(self)


class TeacherLogitsCache:
    """`<root>/<key>.npy` + `<key>.json` (what the logits were computed from)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_or_compute(
        self,
        teacher_dir: Path,
        texts: list[str],
        max_length: int,
        batch_size: int,
        teacher_version: str | None = None,
        shortcut: Callable[[list[str]], np.ndarray | None] | None = None,
    ) -> CachedLogits:
        """The cached logits, or computed now: by `shortcut(texts)` when it gives them (a probe teacher's head on
        its cached encoder vectors), else by running the teacher."""
        started = time.perf_counter()
        teacher_digest = folder_digest(Path(teacher_dir))
        data_digest = texts_digest(texts)
        key = cache_key(teacher_digest, data_digest, max_length)
        target = self.root / f"{key}.npy"
        meta_file = self.root / f"{key}.json"
        if target.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            return CachedLogits(str(target), key, True, time.perf_counter() - started, meta)
        logits = shortcut(texts) if shortcut is not None else None
        computed_by = "the teacher's head on its cached encoder vectors"
        if logits is None:
            model, tokenizer = load_trained(teacher_dir)
            if torch.cuda.is_available():
                model.to("cuda")
            logits = compute_logits(model, tokenizer, texts, batch_size, max_length)
            computed_by = "the teacher"
        config = json.loads((Path(teacher_dir) / "config.json").read_text())
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {
            "computed_by": computed_by,
            "teacher_digest": teacher_digest,
            "teacher_dir": str(teacher_dir),
            "teacher_version": teacher_version,
            "data_digest": data_digest,
            "rows": len(texts),
            "max_length": max_length,
            "labels": [config["id2label"][str(i)] for i in range(len(config["id2label"]))],
        }
        # Write-then-rename: a crashed run never leaves a half-written cache entry behind.
        tmp = self.root / f"{key}.tmp.npy"
        np.save(tmp, logits)
        tmp.replace(target)
        meta_file.write_text(json.dumps(meta, indent=2))
        return CachedLogits(str(target), key, False, time.perf_counter() - started, meta)
