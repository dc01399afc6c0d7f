"""Nudge the reconciler after storing a hint, so a pass starts without waiting for a poll.

Contract with the reconciler (dtserver.reconciler.Wakeup): `wakeup_path` is a FIFO it
makes and keeps open for reading. We write one byte to it and to nothing else: the open
never follows a link, never creates the path and never blocks, and anything but a FIFO is
left alone. Nobody listening, a full pipe or a missing path are all fine: the hint is
already stored and the next poll picks it up.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# ENXIO: a FIFO with no reader; EAGAIN: the pipe is full, so a wakeup is already pending.
_NOBODY_NEEDS_IT = frozenset({errno.ENOENT, errno.ENXIO, errno.EAGAIN})
# O_NONBLOCK: an open of a FIFO without a reader fails (ENXIO) instead of waiting for one,
# and the write fails (EAGAIN) instead of waiting for room.
_FLAGS = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY

# Paths already reported as wrong: each hint would repeat the warning otherwise.
_reported: set[Path] = set()
_reported_lock = threading.Lock()


def wake_reconciler(path: Path | None) -> bool:
    """Write one byte to the FIFO at `path`; True when it was written."""
    if path is None:
        return False
    try:
        fd = os.open(path, _FLAGS)
    except OSError as error:
        if error.errno not in _NOBODY_NEEDS_IT:
            _report(path, f"cannot open it: {error.strerror}")
        return False
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            _report(path, "it is not a FIFO")
            return False
        os.write(fd, b"\n")
    except OSError as error:
        if error.errno not in _NOBODY_NEEDS_IT:
            _report(path, f"cannot write to it: {error.strerror}")
        return False
    finally:
        os.close(fd)
    return True


def _report(path: Path, problem: str) -> None:
    with _reported_lock:
        if path in _reported:
            return
        _reported.add(path)
    log.warning("wakeup path %s must be the reconciler's FIFO: %s; hints wait for the next "
                "poll", path, problem)
