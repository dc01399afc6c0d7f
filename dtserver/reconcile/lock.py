"""Only one reconciler may act on a cluster: two would launch everything twice."""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from dtserver.model import DtError


class ReconcilerLocked(DtError):
    """Another reconciler holds the lock."""


class SingleInstanceLock:
    """An exclusive flock on a file beside the database, held for the process lifetime.

    flock, not a pid file: the kernel releases it when the process dies, however it dies,
    so a crash never leaves a stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise ReconcilerLocked(f"another reconciler holds {self.path}") from error
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SingleInstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
