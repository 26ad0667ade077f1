"""Frozen sentence encoders: texts -> pooled vectors, with torch or onnxruntime (optionally int8), and a cache.

Texts are tokenised once, sorted by token length and batched with dynamic padding (each batch pads to its
own longest text), then put back in input order. Pooling is textclf.pooling.masked_mean (or [CLS]) over the
last hidden states, the same code for both backends.

ONNX: the encoder is exported once (torch's dynamo exporter; batch and sequence axes dynamic) into a folder
keyed by the encoder folder's content digest, max_length and quantize, and reused by later calls.

Vectors: `<cache_dir>/vectors/<key>/*.npz`, key = (encoder digest, pooling, max_length, backend, quantize);
each file holds the sha256 of its texts and their vectors. A call encodes only texts no file holds yet and
adds one file for them (written to a temporary name, then renamed: readers never see half a file).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from textclf.errors import ConfigError, ModelNotFound
from textclf.modeling import quiet_transformers, resolve_model
from textclf.pooling import masked_mean
from textclf.settings import cpu_threads, encoder_cache_dir
from textclf.train.onnx_export import export_program, require_onnx_packages
from textclf.train.teacher_cache import folder_digest

Backend = Literal["onnx", "torch"]
Pooling = Literal["mean", "cls"]
FORMAT_VERSION = 1  # bump when the vectors for one key would change (export, pooling or quantisation code)
ONNX_FILE = "encoder.onnx"
DIGEST_BYTES = 32  # sha256
# Hidden states [batch, sequence, width] from int64 input_ids and attention_mask [batch, sequence].
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # float32 [n_texts, hidden], in the order of the texts
    encoded: int  # distinct texts run through the encoder by this call
    cached: int  # distinct texts read from cache_dir


@dataclass(frozen=True)
class FrozenEncoder:
    """A loaded encoder: its tokenizer and a forward function; `embed` has no cache, `encode` adds one."""

    location: str
    identity: str  # sha256 of the encoder folder's files
    tokenizer: object
    forward: Forward
    pooling: Pooling
    max_length: int
    backend: Backend
    quantize: bool
    hidden_size: int
    precision: str = "fp32"  # what the forward computes in: int8 (onnx quantize), bf16/fp16 (torch on a GPU)

    @property
    def cache_key(self) -> str:
        variant = f"{self.backend}-{self.precision}"
        raw = f"v{FORMAT_VERSION}|{self.identity}|pooling={self.pooling}|max_length={self.max_length}|{variant}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def embed(self, texts: list[str], batch_size: int, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """float32 [len(texts), hidden]: length-sorted, dynamically padded batches, returned in input order;
        `progress(n)` after each batch of n texts."""
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]  # type: ignore[operator]
        order = np.argsort([len(x) for x in ids], kind="stable")
        pad = self.tokenizer.pad_token_id  # type: ignore[attr-defined]
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):  # right padding, as the tokenizer does
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            hidden = torch.from_numpy(np.ascontiguousarray(self.forward(input_ids, mask), dtype=np.float32))
            pooled = masked_mean(hidden, torch.from_numpy(mask)) if self.pooling == "mean" else hidden[:, 0]
            out[idx] = pooled.numpy()
            if progress is not None:
                progress(len(idx))
        return out


def encode(
    texts: list[str],
    encoder: str | Path,
    *,
    pooling: Pooling,
    max_length: int,
    batch_size: int,
    backend: Backend,
    quantize: bool,
    cache_dir: Path | None = None,
    onnx_dir: Path | None = None,
) -> Encoded:
    """Pooled vectors of `texts` from the frozen `encoder` (a model folder or 'packaged:...').

    quantize: int8 weights (onnx only). cache_dir: the vectors are kept there (None: no vector cache).
    onnx_dir: where ONNX exports are kept (None: settings.encoder_cache_dir()/onnx, shared by every project)."""
    frozen = load_encoder(encoder, pooling=pooling, max_length=max_length, backend=backend, quantize=quantize, onnx_dir=onnx_dir)
    return encode_cached(frozen, texts, batch_size, cache_dir)


def encode_cached(
    frozen: FrozenEncoder,
    texts: list[str],
    batch_size: int,
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> Encoded:
    """`frozen.embed` for the distinct texts `cache_dir` does not hold yet; the rest read from it.
    `progress(done, total)` after each encoded batch (total: the texts to encode)."""
    digests = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
    cache = VectorCache(Path(cache_dir) / "vectors" / frozen.cache_key) if cache_dir is not None else None
    known = cache.read() if cache is not None else {}
    first_new: dict[bytes, int] = {}  # digest -> first position of a text no cache file holds
    for pos, d in enumerate(digests):
        if d not in known:
            first_new.setdefault(d, pos)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(first_new))

    fresh = frozen.embed([texts[p] for p in first_new.values()], batch_size, step)
    if cache is not None and first_new:
        cache.add(list(first_new), fresh, _describe(frozen))
    lookup = {**known, **dict(zip(first_new, fresh, strict=True))}
    vectors = np.zeros((len(texts), frozen.hidden_size), dtype=np.float32)
    for pos, d in enumerate(digests):
        vectors[pos] = lookup[d]
    return Encoded(vectors=vectors, encoded=len(first_new), cached=len(set(digests) - set(first_new)))


def load_encoder(
    encoder: str | Path,
    *,
    pooling: Pooling,
    max_length: int,
    backend: Backend,
    quantize: bool,
    onnx_dir: Path | None = None,
) -> FrozenEncoder:
    """Tokenizer + forward function for `encoder` on `backend`; onnx exports (and quantises) on first use."""
    if pooling not in ("mean", "cls"):
        raise ConfigError(f"encoder pooling {pooling!r}: choose 'mean' or 'cls'")
    if backend not in ("onnx", "torch"):
        raise ConfigError(f"encoder backend {backend!r}: choose 'onnx' or 'torch'")
    location = Path(resolve_model(str(encoder)))
    if not location.is_dir():
        raise ModelNotFound(f"frozen encoder {encoder!r}: give a local model folder or a 'packaged:' model, not a hub id")
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    hidden_size = int(AutoConfig.from_pretrained(location, trust_remote_code=False).hidden_size)
    identity = encoder_identity(location)
    if backend == "torch":
        forward, precision = _torch_forward(location)
    else:
        precision = "int8" if quantize else "fp32"
        onnx_root = Path(onnx_dir) if onnx_dir is not None else encoder_cache_dir() / "onnx"
        forward = _onnx_forward(onnx_file(location, identity, max_length, quantize, onnx_root))
    return FrozenEncoder(
        str(location), identity, tokenizer, forward, pooling, max_length, backend, quantize, hidden_size, precision
    )


def encoder_identity(folder: Path) -> str:
    """folder_digest of `folder`, computed once per process while no file's size or mtime changes."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    stamp = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(str(Path(folder).resolve()), stamp)


@functools.lru_cache(maxsize=16)
def _digest(folder: str, stamp: tuple) -> str:  # stamp: part of the memo key only
    return folder_digest(Path(folder))


def _load_base_model(location: Path):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" per call: noise in a library function
    try:
        with quiet_transformers():
            model = AutoModel.from_pretrained(location, use_safetensors=True, trust_remote_code=False)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval()


def _torch_forward(location: Path) -> tuple[Forward, str]:
    """fp32 on the CPU, bf16 (fp16 without it) on a GPU when there is one; returns the forward and its precision."""
    model = _load_base_model(location)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "fp32"
    if device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        model = model.to(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)

    @torch.inference_mode()
    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = model(input_ids=torch.from_numpy(input_ids).to(device), attention_mask=torch.from_numpy(attention_mask).to(device))
        return out.last_hidden_state.float().cpu().numpy()

    return forward, precision


def _onnx_forward(path: Path) -> Forward:
    require_onnx_packages("encoder backend 'onnx' is chosen", "use backend='torch'")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return forward


def onnx_file(location: Path, identity: str, max_length: int, quantize: bool, root: Path) -> Path:
    """`<root>/<key>/encoder.onnx`, exported (and quantised) when absent; key = identity, max_length, quantize."""
    raw = f"v{FORMAT_VERSION}|{identity}|max_length={max_length}|quantize={quantize}"
    folder = Path(root) / hashlib.sha256(raw.encode()).hexdigest()[:24]
    if (folder / ONNX_FILE).is_file():
        return folder / ONNX_FILE
    require_onnx_packages("encoder backend 'onnx' is chosen", "use backend='torch'")
    # The int8 model is made from the fp32 export, which is cached too (its own key).
    source = onnx_file(location, identity, max_length, False, root) if quantize else None
    with _building(folder) as tmp:
        if source is None:
            export_encoder(_load_base_model(location), tmp / ONNX_FILE)
        else:
            quantize_int8(source, tmp / ONNX_FILE)
        meta = {"encoder": str(location), "identity": identity, "max_length": max_length, "quantize": quantize}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return folder / ONNX_FILE


def export_encoder(model, dest: Path) -> Path:
    """A base encoder (AutoModel) -> one .onnx file: input_ids, attention_mask -> last_hidden_state."""

    class LastHidden(torch.nn.Module):  # one tensor out: the pooler (if any) is pruned from the graph
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Two rows of different lengths: example sizes of 1 would be specialised by torch.export.
    example = {
        "input_ids": torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]], dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.long),
    }
    what = f"the encoder {type(model).__name__}"
    return export_program(LastHidden(model).eval(), example, "last_hidden_state", dest, what, "use backend='torch'")


def quantize_int8(source: Path, dest: Path) -> Path:
    """Dynamic int8 quantisation (QInt8 weights, per channel) of the weight MatMuls, except FFN down-projections.

    Activations are quantised per tensor at run time. The input of a down-projection (the GELU output) has a
    few huge channels; quantised per tensor, MPNet's mean-pooled vectors fell to cosine ~0.7 against fp32
    (~0.99 with those MatMuls kept in fp32). MatMuls of two activations (attention scores) stay fp32 too."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) in {"Gelu", "FastGelu"}]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "please consider to run pre-processing": shape inference, not needed here
    try:
        quantize_dynamic(
            str(source),
            str(dest),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=keep_fp32,
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        root.setLevel(level)
    return dest


class VectorCache:
    """`<root>/*.npz` files of (sha256 of text [k, 32] uint8, vectors [k, hidden] float32), plus meta.json."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def read(self) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for path in sorted(self.root.glob("*.npz")):
            with np.load(path, allow_pickle=False) as data:
                vectors = data["vectors"]
                for digest, vector in zip(data["digests"], vectors, strict=True):
                    found[digest.tobytes()] = vector
        return found

    def add(self, digests: list[bytes], vectors: np.ndarray, meta: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "meta.json").is_file():
            _write_atomic(self.root / "meta.json", json.dumps(meta, indent=2).encode())
        array = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), DIGEST_BYTES)
        # A unique name per write: concurrent writers never replace each other's files.
        target = self.root / f"{uuid.uuid4().hex}.npz"
        tmp = self.root / f".{target.stem}.tmp.npz"
        np.savez(tmp, digests=array, vectors=np.asarray(vectors, dtype=np.float32))
        tmp.replace(target)
        return target


def _describe(frozen: FrozenEncoder) -> dict:
    keys = ("location", "identity", "pooling", "max_length", "backend", "quantize", "precision", "hidden_size")
    return {"format_version": FORMAT_VERSION, **{k: getattr(frozen, k) for k in keys}}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@contextmanager
def _building(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder`, renamed to it when the block succeeds (another process's finished
    copy wins); removed either way, so a killed build leaves no half-written model under the final name."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, folder)
        except OSError:  # already built by someone else
            if not (folder / ONNX_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
