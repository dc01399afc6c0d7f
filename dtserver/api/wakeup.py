"""Nudge the reconciler after storing a hint, so a pass starts without waiting for a poll.

Contract with the reconciler: `wakeup_path` is a FIFO it keeps open for reading (or a
plain file whose mtime it watches). We write one byte without blocking and without
creating the path. Nobody listening, a full pipe or a missing path are all fine: the
hint is already stored and the next poll picks it up.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# ENXIO: a FIFO with no reader; EAGAIN: the pipe is full, so a wakeup is already pending.
_NOBODY_NEEDS_IT = frozenset({errno.ENOENT, errno.ENXIO, errno.EAGAIN})


def wake_reconciler(path: Path | None) -> bool:
    """Write one byte to `path`; True when it was written."""
    if path is None:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)
    except OSError as error:
        if error.errno not in _NOBODY_NEEDS_IT:
            log.warning("wakeup failed path=%s error=%s", path, error)
        return False
    return True
