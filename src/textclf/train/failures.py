"""A failing rank writes its error to the run folder, so the launcher reports it, not a log guess."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from textclf.errors import TextclfError

FAILURE_DIR = "failures"


def describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, TextclfError) else f"{type(err).__name__}: {text}".rstrip(": ")


def write_failure(run_dir: Path, err: BaseException) -> None:
    rank = int(os.environ.get("RANK", 0))
    folder = Path(run_dir) / FAILURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record = {"rank": rank, "time": time.time(), "message": describe(err)}
    tmp = folder / f"rank-{rank}.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(folder / f"rank-{rank}.json")


def first_failure(run_dir: Path) -> dict | None:
    """The earliest failure any rank recorded: the cause; later ones are usually its echo."""
    records = []
    for path in sorted((Path(run_dir) / FAILURE_DIR).glob("rank-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return min(records, key=lambda r: r["time"]) if records else None


def clear_failures(run_dir: Path) -> None:
    for path in (Path(run_dir) / FAILURE_DIR).glob("rank-*.json"):
        path.unlink(missing_ok=True)


@contextmanager
def recording_failures(run_dir: Path) -> Iterator[None]:
    """Write this rank's exception (not KeyboardInterrupt/SystemExit) to `run_dir/failures/`, re-raise."""
    try:
        yield
    except Exception as err:
        write_failure(run_dir, err)
        raise
