"""Watching data.inbox for drops that land: a file is reported once, when its size and modification time stayed the
same over two polls (a copy in progress is not a drop yet). Files there when watching starts are not new: the next
retrain adds them. No Prefect here: the caller says what to do with a landed file (flows/events.py emits an event)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from textclf.data.readers import FILE_READERS

log = logging.getLogger(__name__)


def _drops(folder: Path) -> dict[Path, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or path.suffix.lower() not in FILE_READERS:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file() and st.st_size > 0:
            found[path.resolve()] = (st.st_size, st.st_mtime_ns)
    return found


class InboxWatcher:
    """Poll `folder`; call `landed(path)` once per new drop file that stopped changing."""

    def __init__(self, folder: Path, landed: Callable[[Path], None], poll_s: float = 2.0):
        self.folder = Path(folder)
        self.landed = landed
        self.poll_s = poll_s
        self._known = _drops(self.folder)  # present before watching: not new
        self._pending: dict[Path, tuple[int, int]] = {}
        self._stop = threading.Event()

    def poll(self) -> list[Path]:
        """One look at the folder; the files that landed since the last look (after `landed` was called for each)."""
        now = _drops(self.folder)
        ready = []
        for path, stamp in now.items():
            if self._known.get(path) == stamp:
                continue
            if self._pending.get(path) == stamp:  # unchanged since the last poll: it has landed
                ready.append(path)
                self._known[path] = stamp
                del self._pending[path]
            else:
                self._pending[path] = stamp
        for path in ready:
            try:
                self.landed(path)
            except Exception as err:  # a failed notification must not stop the watcher; it is logged
                log.error("inbox: could not report %s: %s", path, err)
        return ready

    def run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="textclf-inbox", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
