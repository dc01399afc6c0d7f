"""The wakeup FIFO, both halves: the API nudges the reconciler after storing a hint, so a
pass starts without waiting for a poll.

The reconciler (Wakeup) makes the FIFO at `wakeup_path` and keeps it open for reading.
The API (wake_reconciler) writes one byte to it and to nothing else: the open never
follows a link, never creates the path and never blocks, and anything but a FIFO is left
alone. Nobody listening, a full pipe or a missing path are all fine: the hint is already
stored and the next poll picks it up. Both halves live here so the contract between them
is read in one place; the API may import this module, never the reconciler.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading
import time
from pathlib import Path

from dtserver.model import DtError

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


class Wakeup:
    """The reconciler's half: the FIFO it makes, waits on and drains.

    Anything else at the path is refused: a plain file is always "ready", so the loop
    would spin on it, and a link could point anywhere. The FIFO is mode 0620: the API,
    running as its own user in the service's group, may write to it, not read from it.
    """

    MODE = 0o620

    def __init__(self, path: Path) -> None:
        try:
            os.mkfifo(path, self.MODE)
        except FileExistsError:
            pass
        except OSError as error:
            raise DtError(f"cannot make the wakeup FIFO {path}: {error.strerror}") from error
        try:
            # O_RDWR keeps a writer open ourselves, so select() never spins on EOF.
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as error:
            raise DtError(f"wakeup path {path} must be a FIFO: cannot open it "
                          f"({error.strerror}); remove it and restart") from error
        status = os.fstat(fd)
        if not stat.S_ISFIFO(status.st_mode):
            os.close(fd)
            raise DtError(f"wakeup path {path} must be a FIFO and is not: remove it and "
                          "restart (the reconciler makes the FIFO)")
        if status.st_uid == os.geteuid() and stat.S_IMODE(status.st_mode) != self.MODE:
            # The umask took the group's write bit, or an older version made it 0600.
            os.fchmod(fd, self.MODE)
        self._fd = fd

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """True when woken by a write; checks `stop` at least every half second."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], min(left, 0.5))
            if ready:
                self._drain()
                return True
        return False

    def notify(self) -> None:
        """Wake the loop from this process (a background step ended)."""
        try:
            os.write(self._fd, b"\0")
        except BlockingIOError:
            pass                              # the pipe is full: a wakeup is pending anyway

    def pending(self) -> bool:
        """A wakeup is waiting (not consumed: the next wait returns at once)."""
        ready, _, _ = select.select([self._fd], [], [], 0)
        return bool(ready)

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self._fd)
