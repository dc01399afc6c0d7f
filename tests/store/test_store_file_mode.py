"""A new database file takes its mode from the umask, as any file does: SQLite's own
default (0644) would keep the API, in the service's group, from writing hints to it."""
from __future__ import annotations

import os
import stat

import pytest

from dtserver.store.sqlite import SqliteStore


@pytest.mark.parametrize("umask, mode", [(0o007, 0o660), (0o022, 0o644), (0o077, 0o600)])
def test_a_new_database_file_is_0666_less_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with SqliteStore(tmp_path / "dt.db") as store:
            store.is_sleeping()
            wal_mode = stat.S_IMODE(os.stat(tmp_path / "dt.db-wal").st_mode)
    finally:
        os.umask(old)

    assert stat.S_IMODE(os.stat(tmp_path / "dt.db").st_mode) == mode
    assert wal_mode == mode                  # SQLite gives -wal and -shm the file's mode


def test_an_existing_database_keeps_its_mode(tmp_path):
    path = tmp_path / "dt.db"
    SqliteStore(path).close()
    path.chmod(0o600)
    old = os.umask(0o007)
    try:
        SqliteStore(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
