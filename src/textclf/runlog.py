"""`textclf run` on a terminal: progress on the console, never a traceback; the whole log in a file.

A data or config error inside the flow ends in one line from the CLI (what, where, how to fix). Prefect's own
records of that failure (the task's and the flow's ERROR with the traceback, the "Finished in state Failed" line)
would repeat it as a page of stack; they go to the log file only, with everything else.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

QUIET = ("prefect",)  # loggers whose failure records stay off the console
FAILED_STATES = ("Finished in state Failed", "Finished in state Crashed")


class _NoFailureChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] not in QUIET:
            return True
        if record.levelno >= logging.ERROR or record.exc_info:
            return False
        return not str(record.msg).startswith(FAILED_STATES)


def log_to_file(folder: Path) -> Path:
    """Send every record the root logger sees to a new file in `folder` and keep Prefect's failure records
    (tracebacks) off the handlers already installed (the console); `datasets`' per-save progress bars off.
    Returns the file's path."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.log").resolve()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    root = logging.getLogger()
    for existing in root.handlers:
        existing.addFilter(_NoFailureChatter())
    root.addHandler(handler)
    return path
