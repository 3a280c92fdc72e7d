"""One builder at a time: an exclusive ``fcntl`` lock on a file beside what is being built.

Two runs needing the same missing cache (two terminals, a parallel sweep) must not both write
it: the second waits for the first, then reuses what it published. The lock is released by the
kernel when its holder exits, however it exits (kill -9 included), so it never goes stale. The
lock file itself stays (deleting it would race with a waiter that already opened it).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def lock_path_for(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


@contextmanager
def exclusive_lock(path: str | Path, what: str | None = None) -> Iterator[bool]:
    """Hold the lock of ``path`` (``<path>.lock``); yields whether another holder made us wait.
    ``what`` names what is being built in the log line (default: ``path``)."""
    lock = lock_path_for(Path(path))
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            log.info("another process is building %s: waiting for it (lock %s)", what or path, lock)
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        yield waited
    finally:
        os.close(fd)  # closing the descriptor releases the lock
