"""Process lifetime under torchrun: no rank may outlive the launcher that started it.

torchrun starts each rank in a new session (its own process group), so killing torchrun's
group, or torchrun itself with `kill -9`, would leave the ranks training as orphans that keep
writing checkpoints into the run folder a retry is about to resume from.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), sig)


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (Linux /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to `pid`'s process group and to every descendant, whatever session it is in."""
    victims = descendants(pid)
    for target in (lambda: os.killpg(pid, sig), *[(lambda p=p: os.kill(p, sig)) for p in victims]):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
